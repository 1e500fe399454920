/* global document, fetch, setTimeout, URL, FormData, Image */
// Demo page: every photo dropped or picked becomes its own job (POST /v1/jobs, inline), polled until it
// is done or failed; the card shows progress, before/after with the face boxes, the per-face verdicts of
// the report, the loss curves, or why it failed and what to change. Plain JS, no build step, no network
// beyond this local stack (the page must work offline).
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const COLORS = ['#ff3d71', '#00a3bf', '#ff991f', '#36b37e', '#6554c0', '#e6399b', '#0065ff', '#8f7ee7'];
  // The API's inline limit (MAX_INLINE_BYTES): larger files go through presigned uploads, which the CLI does.
  const INLINE_LIMIT = 4 * 1024 * 1024;
  const SVG = 'http://www.w3.org/2000/svg';

  // What to change, per error code of the API (problem type slug) or of the image (error.code).
  const ADVICE = {
    'privacy-check-failed':
      'A face stayed recognisable to the independent identity check, so the image was withheld (and not billed). ' +
      'With the demo bundle this is expected for some photos: its untrained identity network cannot move a face ' +
      'away from its owner. Try fewer steps (for example 20) or another photo; the production bundle makes this rare.',
    'unsupported-image-type':
      'Only JPEG, PNG and WebP photos are accepted. Export the picture in one of these formats and add it again.',
    'corrupt-image':
      'The file is damaged or incomplete (for example a partial download). Open it in an image viewer, save it again and add the new copy.',
    'empty-image': 'The file is empty. Check that the photo was copied completely.',
    'too-many-pixels':
      'The photo has more pixels than the service accepts. Downscale it (for example to 4000 px on the long side) and add it again.',
    'image-too-large':
      'The file is bigger than this page sends (4 MB). Downscale or recompress it, or send it with ' +
      '`npm run cli -- submit <folder>`, which uploads large files straight to storage.',
    'request-too-large':
      'The file is bigger than this page sends (4 MB). Downscale or recompress it, or use `npm run cli -- submit <folder>`.',
    'processing-failed':
      'The engine failed on this photo several times. Add it again; if it keeps failing, look at the log of `npm start`.',
    'input-missing': 'The photo was erased before it was processed (job deleted or expired). Add it again.',
    'too-many-requests': 'Too many requests at once. Wait a few seconds and add the photo again.',
    network: 'The local stack did not answer. Is `npm start` still running?',
  };
  const FALLBACK_ADVICE =
    'Check the photo and add it again; the message above says what the service objected to.';

  let apiKey = null;
  async function key() {
    if (!apiKey) apiKey = (await (await fetch('/local/config.json')).json()).apiKey;
    return apiKey;
  }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }
  const fmt = (x, d = 2) => (typeof x === 'number' && isFinite(x) ? x.toFixed(d) : '–');
  const mb = (n) => (n / 1024 / 1024).toFixed(1) + ' MB';
  const slug = (type) => (typeof type === 'string' ? type.split('/').pop() : 'error');
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  /** Puts an image into a frame only once it has loaded, so a failed load never shows a broken-image icon. */
  function showImage(frame, src, alt, waiting, broken) {
    frame.replaceChildren(el('div', { class: 'placeholder', text: waiting }));
    const img = new Image();
    img.alt = alt;
    img.onload = () => {
      const keep = frame.querySelector('svg');
      frame.replaceChildren(img);
      if (keep) frame.append(keep);
    };
    img.onerror = () => frame.replaceChildren(el('div', { class: 'placeholder', text: broken }));
    img.src = src;
  }

  function boxes(frame, report) {
    frame.querySelector('svg')?.remove();
    if (!report || !report.faces.length) return;
    const s = svg('svg', { viewBox: `0 0 ${report.width} ${report.height}`, preserveAspectRatio: 'none' });
    const w = Math.max(2, report.width / 250);
    report.faces.forEach((f, i) => {
      const c = COLORS[i % COLORS.length];
      s.append(
        svg('rect', {
          x: f.box.x,
          y: f.box.y,
          width: f.box.width,
          height: f.box.height,
          fill: 'none',
          stroke: c,
          'stroke-width': w,
        }),
      );
      const size = Math.max(14, report.width / 40);
      s.append(
        svg('rect', { x: f.box.x, y: f.box.y - size * 1.2, width: size * 1.3, height: size * 1.2, fill: c }),
      );
      const t = svg('text', {
        x: f.box.x + size * 0.3,
        y: f.box.y - size * 0.25,
        fill: '#fff',
        'font-size': size,
        'font-weight': 700,
        'font-family': 'system-ui, sans-serif',
      });
      t.textContent = String(i + 1);
      s.append(t);
    });
    frame.append(s);
  }

  function updateNotice(bundle) {
    const n = $('notice');
    if (!bundle || n.dataset.bundle === bundle.id) return;
    n.dataset.bundle = bundle.id;
    if (bundle.id === 'stand-in') {
      n.className = 'notice standin';
      n.replaceChildren(
        el('h2', { text: 'Engine: test stand-in — nothing is anonymized' }),
        el('p', {
          text: 'The model bundle could not be loaded, so the stack runs a stand-in that inverts the colours of a box. Build the demo bundle with `npm run models -- demo` and restart `npm start`.',
        }),
      );
    } else if (!bundle.demo) {
      n.className = 'notice real';
      n.replaceChildren(
        el('h2', { text: `Production bundle ${bundle.id}` }),
        el('p', {
          text: 'Faces are replaced by realistic generated faces of nobody that keep pose, expression, age and lighting.',
        }),
      );
    } else {
      n.querySelector('h2').textContent = `What this demo can and cannot show (bundle ${bundle.id})`;
    }
  }

  /** Identity verdicts of one face: every recognizer when the report has them, else the combined check. */
  function verdicts(f) {
    const list = el('div');
    const rs = Array.isArray(f.recognizers) && f.recognizers.length ? f.recognizers : null;
    if (rs) {
      for (const r of rs) {
        list.append(
          el(
            'div',
            {},
            el('span', {
              class: r.recognisable ? 'bad' : 'ok',
              text: r.recognisable ? 'still recognisable' : 'different person',
            }),
            ` — ${r.recognizer}: distance ${fmt(r.distance)} (same person below ${fmt(r.threshold)}; false matches ${fmt(100 * r.falseMatchRate, 1)} %)`,
          ),
        );
      }
    } else {
      list.append(
        el('span', {
          class: f.reidentified ? 'bad' : 'ok',
          text: f.reidentified ? 'still recognisable' : 'different person',
        }),
        ` — face-api distance ${fmt(f.identityDistance)}`,
      );
    }
    if (f.attempts > 1) list.append(el('div', { class: 'hint', text: `${f.attempts} attempts` }));
    return list;
  }

  /**
   * The utility comparison, original → anonymized, one compact line ("age 31→29 · F→F · happy→happy · pose Δ4°"),
   * each part green when kept (age within 5 years, same gender, same expression, pose within 10°) and red when
   * not; the full numbers in the tooltip. Faces covered by a fallback are not measured (their utility is given
   * up by design): "n/a".
   */
  function attributes(f) {
    const a = f.attributes;
    if (!a || !a.original || !a.anonymized || !a.change) {
      const fallback = f.method && f.method !== 'falco';
      return el('span', {
        class: 'hint',
        text: fallback ? `n/a (${f.method}: not kept by design)` : 'not measured',
      });
    }
    const o = a.original;
    const n = a.anonymized;
    const c = a.change;
    const sex = (x) => (x.gender === 'female' ? 'F' : 'M');
    const part = (kept, text, title) => el('span', { class: kept ? 'kept' : 'lost', text, title });
    const pose = (x) =>
      `yaw ${fmt(x.pose.yaw, 0)}°, pitch ${fmt(x.pose.pitch, 0)}°, roll ${fmt(x.pose.roll, 0)}°`;
    const parts = [
      part(
        Math.abs(c.ageDelta) <= 5,
        `age ${fmt(o.age, 0)}→${fmt(n.age, 0)}`,
        `age ${fmt(o.age, 1)} → ${fmt(n.age, 1)} years`,
      ),
      part(
        c.genderKept,
        `${sex(o)}→${sex(n)}`,
        `${o.gender} (${fmt(o.genderScore)}) → ${n.gender} (${fmt(n.genderScore)})`,
      ),
      part(
        c.expressionKept,
        `${o.expression}→${n.expression}`,
        `${o.expression} (${fmt(o.expressionScore)}) → ${n.expression} (${fmt(n.expressionScore)})`,
      ),
      part(
        c.poseDeltaDeg <= 10,
        `pose Δ${fmt(c.poseDeltaDeg, 0)}°`,
        `${pose(o)} → ${pose(n)} (largest change ${fmt(c.poseDeltaDeg, 1)}°)`,
      ),
    ];
    // Comma-separated like the CLI's line; each part stays on one line when the cell wraps.
    const line = el('div', { class: 'utility' });
    parts.forEach((p, i) => line.append(...(i ? [', ', p] : [p])));
    return line;
  }

  function facesTable(report) {
    const titles = ['Face', 'Method', 'Identity check', 'Utility: original → anonymized'];
    const head = el('tr', {}, ...titles.map((h) => el('th', { text: h })));
    const body = report.faces.map((f, i) =>
      el(
        'tr',
        {},
        el(
          'td',
          {},
          el('span', { class: 'swatch', style: `background:${COLORS[i % COLORS.length]}` }),
          `#${i + 1}`,
          el('div', {
            class: 'hint',
            text: `at ${fmt(f.box.x, 0)},${fmt(f.box.y, 0)} · ${fmt(f.box.width, 0)}×${fmt(f.box.height, 0)} px · detector ${fmt(f.score)}`,
          }),
        ),
        el(
          'td',
          {},
          f.method || 'falco',
          f.methodReason ? el('div', { class: 'hint', text: `because: ${f.methodReason}` }) : null,
          f.residual
            ? el('div', { class: 'hint', text: 'found on the output by the residual scan, then covered' })
            : null,
        ),
        el('td', {}, verdicts(f)),
        el('td', {}, attributes(f)),
      ),
    );
    // Each cell names its column, for the narrow layout where rows are stacked (index.html, @media).
    for (const row of body) [...row.children].forEach((td, k) => td.setAttribute('data-label', titles[k]));
    return el(
      'div',
      { class: 'table-wrap' },
      el('table', {}, el('thead', {}, head), el('tbody', {}, ...body)),
    );
  }

  /** One small chart per loss term, one line per face (FALCO's loss, its identity and attribute terms). */
  function lossCharts(report) {
    const faces = report.faces.filter((f) => Array.isArray(f.losses) && f.losses.length > 1);
    if (!faces.length) return null;
    const W = 300;
    const H = 130;
    const P = { l: 6, r: 6, t: 18, b: 18 };
    const wrap = el('div', { class: 'charts' });
    ['total loss', 'identity term', 'attribute term'].forEach((title, k) => {
      const series = faces.map((f) => f.losses.map((l) => l[k]));
      const all = series.flat().filter((v) => isFinite(v));
      const lo = Math.min(...all);
      const hi = Math.max(...all);
      const span = hi - lo || 1;
      const steps = Math.max(...series.map((s) => s.length));
      const s = svg('svg', {
        viewBox: `0 0 ${W} ${H}`,
        role: 'img',
        'aria-label': `${title} per optimisation step`,
      });
      s.append(svg('line', { x1: P.l, x2: W - P.r, y1: H - P.b, y2: H - P.b, stroke: '#c9d1da' }));
      series.forEach((v, i) => {
        const pts = v
          .map((y, x) => [
            P.l + ((W - P.l - P.r) * x) / Math.max(1, steps - 1),
            P.t + (H - P.t - P.b) * (1 - (y - lo) / span),
          ])
          .map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`)
          .join(' ');
        s.append(
          svg('polyline', {
            points: pts,
            fill: 'none',
            stroke: COLORS[faces.indexOf(faces[i]) % COLORS.length],
            'stroke-width': 2,
          }),
        );
      });
      const label = (x, y, text, anchor) => {
        const t = svg('text', {
          x,
          y,
          'font-size': 11,
          fill: '#5d6b78',
          'text-anchor': anchor || 'start',
          'font-family': 'system-ui, sans-serif',
        });
        t.textContent = text;
        s.append(t);
      };
      label(P.l, 12, `from ${lo.toPrecision(3)} (bottom) to ${hi.toPrecision(3)} (top)`);
      label(P.l, H - 4, 'step 1');
      label(W - P.r, H - 4, `step ${steps}`, 'end');
      wrap.append(el('div', { class: 'chart' }, el('h4', { text: title }), s));
    });
    return wrap;
  }

  function showReport(card, img) {
    const r = img.report;
    if (!r) return;
    updateNotice(r.bundle);
    boxes(card.before, r);
    boxes(card.after, r);
    const found = typeof r.facesFound === 'number' ? r.facesFound : r.faces.length;
    const bits = [
      r.outcome === 'no_faces'
        ? 'No face found: the photo is returned unchanged.'
        : `${found} face${found === 1 ? '' : 's'} found`,
    ];
    if (typeof r.residualFaces === 'number')
      bits.push(`${r.residualFaces} more found on the output by the residual scan`);
    bits.push(`bundle ${r.bundle.id}${r.bundle.demo ? ' (demo)' : ''}`);
    if (r.timingsMs && typeof r.timingsMs.total === 'number')
      bits.push(`${(r.timingsMs.total / 1000).toFixed(1)} s`);
    card.details.replaceChildren(el('p', { class: 'summary', text: bits.join(' · ') }));
    if (r.faces.length) {
      card.details.append(facesTable(r));
      const charts = lossCharts(r);
      if (charts) card.details.append(charts);
    }
    const raw = el('pre', {
      text: JSON.stringify(r, (k, v) => (k === 'losses' && Array.isArray(v) ? `[${v.length} steps]` : v), 2),
    });
    card.details.append(el('details', {}, el('summary', { text: 'Raw report (JSON)' }), raw));
  }

  function setState(card, state, text) {
    card.root.className = 'card ' + state;
    card.pill.className = 'pill ' + state;
    card.pill.textContent = text;
  }

  function fail(card, code, detail) {
    setState(card, 'failed', 'failed');
    card.bar.style.width = '100%';
    card.stage.textContent = '';
    card.after.replaceChildren(el('div', { class: 'placeholder', text: 'No result: see below why.' }));
    card.details.replaceChildren(
      el(
        'div',
        { class: 'why', role: 'alert' },
        el('p', {}, el('strong', { text: 'Why it failed: ' }), detail || 'the service gave no reason'),
        el('p', {}, el('strong', { text: 'What to change: ' }), ADVICE[code] || FALLBACK_ADVICE),
        el('p', { class: 'code', text: `error code: ${code}` }),
      ),
    );
  }

  function makeCard(file) {
    const pill = el('span', { class: 'pill', text: 'uploading' });
    const bar = el('div');
    const stage = el('div', { class: 'stage', text: 'Uploading…' });
    const before = el('div', { class: 'frame' });
    const after = el(
      'div',
      { class: 'frame' },
      el('div', { class: 'placeholder', text: 'The result appears here.' }),
    );
    const details = el('div');
    const root = el(
      'article',
      { class: 'card' },
      el(
        'div',
        { class: 'card-head' },
        el('h3', { text: file.name }),
        el('span', {}, el('span', { class: 'hint', text: mb(file.size) + ' ' }), pill),
      ),
      el('div', { class: 'progress', role: 'progressbar', 'aria-label': `progress of ${file.name}` }, bar),
      stage,
      el(
        'div',
        { class: 'pair' },
        el('figure', {}, el('figcaption', { text: 'Before' }), before),
        el('figure', {}, el('figcaption', { text: 'After' }), after),
      ),
      details,
    );
    $('results').prepend(root);
    return { root, pill, bar, stage, before, after, details };
  }

  async function call(path, init) {
    for (let attempt = 0; ; attempt++) {
      let res;
      try {
        res = await fetch(path, {
          ...init,
          headers: { Authorization: 'Bearer ' + (await key()), ...(init && init.headers) },
        });
      } catch (err) {
        return {
          ok: false,
          problem: { type: 'network', detail: `the local stack did not answer (${err.message})` },
        };
      }
      const body = await res.json().catch(() => null);
      if (res.status === 429 && attempt < 5) {
        await sleep(1000 * Number(res.headers.get('retry-after') || 1));
        continue;
      }
      return res.ok
        ? { ok: true, body }
        : { ok: false, problem: body || { type: 'error', detail: `HTTP ${res.status}` } };
    }
  }

  async function anonymize(file) {
    const card = makeCard(file);
    const preview = URL.createObjectURL(file);
    showImage(
      card.before,
      preview,
      `${file.name}, original`,
      'Loading preview…',
      'This browser cannot preview this file.',
    );
    if (file.size > INLINE_LIMIT)
      return fail(
        card,
        'image-too-large',
        `${file.name} is ${mb(file.size)}; this page sends photos of up to 4 MB.`,
      );
    const body = new FormData();
    body.append('image', file, file.name);
    body.append(
      'options',
      JSON.stringify({ steps: Math.min(500, Math.max(1, Number($('steps').value) || 50)) }),
    );
    const created = await call('/v1/jobs', { method: 'POST', body });
    if (!created.ok) return fail(card, slug(created.problem.type), created.problem.detail);
    setState(card, 'queued', 'queued');
    card.stage.textContent = 'Waiting for the worker…';
    for (;;) {
      const got = await call('/v1/jobs/' + created.body.id);
      if (!got.ok) return fail(card, slug(got.problem.type), got.problem.detail);
      const img = got.body.images[0];
      card.bar.style.width = `${Math.round(100 * img.progress)}%`;
      if (img.status === 'processing') {
        setState(card, 'running', 'running');
        card.stage.textContent = `${img.stage || 'working'} · ${Math.round(100 * img.progress)} %`;
      }
      if (img.status === 'done') {
        setState(card, 'done', 'done');
        card.stage.textContent = 'Done.';
        showImage(
          card.after,
          img.result.url,
          `${file.name}, anonymized`,
          'Loading result…',
          'The result could not be loaded (its link expires after 15 minutes).',
        );
        showReport(card, img);
        return;
      }
      if (img.status === 'failed')
        return fail(card, img.error ? img.error.code : 'failed', img.error && img.error.detail);
      await sleep(700);
    }
  }

  function add(files) {
    for (const f of files) void anonymize(f);
  }

  $('file').addEventListener('change', () => {
    add([...$('file').files]);
    $('file').value = '';
  });
  const drop = $('drop');
  ['dragenter', 'dragover'].forEach((t) =>
    drop.addEventListener(t, (e) => {
      e.preventDefault();
      drop.classList.add('over');
    }),
  );
  ['dragleave', 'drop'].forEach((t) => drop.addEventListener(t, () => drop.classList.remove('over')));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    add([...e.dataTransfer.files]);
  });
})();
