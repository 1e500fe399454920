/* global document, fetch, setTimeout, URL, FormData */
// Demo page logic: POST the photo inline, poll the job, show before/after. Plain JS, no build step.
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  let apiKey = null;

  async function key() {
    if (!apiKey) apiKey = (await (await fetch('/local/config.json')).json()).apiKey;
    return apiKey;
  }

  function setStatus(text, isError) {
    $('status').textContent = text;
    $('status').className = isError ? 'error' : '';
  }

  async function poll(jobId) {
    for (;;) {
      const res = await fetch('/v1/jobs/' + jobId, { headers: { Authorization: 'Bearer ' + (await key()) } });
      const job = await res.json();
      if (!res.ok) throw new Error(job.detail || 'HTTP ' + res.status);
      const img = job.images[0];
      $('bar').value = job.progress;
      setStatus('Job ' + job.id + ': ' + job.status + (img && img.stage ? ' (' + img.stage + ')' : ''));
      if (job.status === 'completed' || job.status === 'failed') return job;
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  $('form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const file = $('file').files[0];
    if (!file) return;
    $('go').disabled = true;
    $('after').removeAttribute('src');
    $('report').hidden = true;
    $('bar').value = 0;
    $('before').src = URL.createObjectURL(file);
    try {
      const body = new FormData();
      body.append('image', file, file.name);
      body.append('options', JSON.stringify({ steps: Number($('steps').value) || 10 }));
      setStatus('Uploading…');
      const res = await fetch('/v1/jobs', {
        method: 'POST',
        headers: { Authorization: 'Bearer ' + (await key()) },
        body,
      });
      const created = await res.json();
      if (!res.ok) throw new Error(created.detail || 'HTTP ' + res.status);
      const job = await poll(created.id);
      const img = job.images[0];
      if (job.status === 'completed' && img.result) {
        $('after').src = img.result.url;
        $('bar').value = 1;
        const faces = img.report ? img.report.faces.length : 0;
        setStatus('Done: ' + faces + ' face' + (faces === 1 ? '' : 's') + ' anonymized.');
        $('engine').textContent =
          img.report && img.report.bundle.id === 'stand-in'
            ? 'Engine: test stand-in (colours inverted in a box; NOT a real anonymization).'
            : img.report
              ? 'Engine bundle: ' + img.report.bundle.id + (img.report.bundle.demo ? ' (demo weights)' : '')
              : '';
        if (img.report) {
          $('report').textContent = JSON.stringify(
            img.report,
            (k, v) => (k === 'losses' ? '[' + v.length + ' steps]' : v),
            2,
          );
          $('report').hidden = false;
        }
      } else {
        setStatus('Failed: ' + (img && img.error ? img.error.detail : 'unknown error'), true);
      }
    } catch (err) {
      setStatus(String(err.message || err), true);
    } finally {
      $('go').disabled = false;
    }
  });
})();
