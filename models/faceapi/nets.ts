/**
 * face-api's three networks as forward-only ONNX graphs on our engine, from the architectures in the public
 * face-api source (vladmandic/face-api `src/ssdMobilenetv1`, `src/faceFeatureExtractor` +
 * `src/faceLandmarkNet`, `src/faceRecognitionNet`); the code is ours. Inputs are NCHW float32 already
 * normalised the way each net expects (see preprocess.ts); batch size is fixed per graph.
 *
 * - SSD MobileNetV1 (512×512): MobileNetV1 trunk (conv 3×3/2 then 13 depthwise+pointwise pairs, BN folded,
 *   ReLU6), six SSD box predictors on conv11 (32×32), the trunk output (16×16) and four extra layers
 *   (8, 4, 2, 1), 5118 anchors. Outputs raw box encodings [B, 5118, 4] and class logits [B, 5118, 3];
 *   anchor decoding, sigmoid and NMS run on the host (detector.ts).
 * - FaceLandmark68Net (112×112): four 4-layer dense blocks (first conv plain, the rest depthwise-separable,
 *   stride 2 at each block start), 7×7/2 average pool, FC 256→136 (x0,y0,x1,y1,… relative to the input).
 * - FaceRecognitionNet (150×150): dlib-style ResNet-34: conv 7×7/2 valid + scale, max-pool 3×3/2, residual
 *   stages 32/64/128/256 (down-sampling blocks add a 2×2 average-pooled, zero-channel-padded shortcut), global
 *   mean, FC 256→128 without bias.
 */
import * as E from '../engine/index.js';
import { conv, depthwiseToOihw, foldAffine, hwioToOihw, maxPoolValid, relu6 } from './layers.js';
import { WeightMap } from './weights.js';

const BN_EPS = 0.0010000000474974513;

function dense(
  g: E.Graph,
  x: E.Tensor,
  wm: WeightMap,
  name: string,
  stride: number,
  padding: 'same' | 'valid' = 'same',
): E.Tensor {
  const w = wm.get(`${name}/weights`);
  return conv(
    g,
    x,
    {
      weight: hwioToOihw(w.data as Float32Array, w.shape),
      wshape: [w.shape[3], w.shape[2], w.shape[0], w.shape[1]],
      bias: wm.float(`${name}/biases`),
      stride,
      padding,
    },
    name,
  );
}

// ---------------------------------------------------------------- SSD MobileNetV1

export const SSD_INPUT = 512;
export const SSD_ANCHORS = 5118;

function ssdPointwise(g: E.Graph, x: E.Tensor, wm: WeightMap, prefix: string, stride: number): E.Tensor {
  const w = wm.get(`${prefix}/weights`);
  const y = conv(
    g,
    x,
    {
      weight: hwioToOihw(w.data as Float32Array, w.shape),
      wshape: [w.shape[3], w.shape[2], w.shape[0], w.shape[1]],
      bias: wm.float(`${prefix}/convolution_bn_offset`),
      stride,
      padding: 'same',
    },
    prefix,
  );
  return relu6(g, y);
}

function ssdDepthwise(g: E.Graph, x: E.Tensor, wm: WeightMap, prefix: string, stride: number): E.Tensor {
  const w = wm.get(`${prefix}/depthwise_weights`);
  const c = w.shape[2];
  const gamma = wm.float(`${prefix}/BatchNorm/gamma`, [c]);
  const beta = wm.float(`${prefix}/BatchNorm/beta`, [c]);
  const mean = wm.float(`${prefix}/BatchNorm/moving_mean`, [c]);
  const variance = wm.float(`${prefix}/BatchNorm/moving_variance`, [c]);
  const a = new Float32Array(c);
  const shift = new Float32Array(c);
  for (let i = 0; i < c; i++) {
    a[i] = gamma[i] / Math.sqrt(variance[i] + BN_EPS);
    shift[i] = beta[i] - mean[i] * a[i];
  }
  const folded = foldAffine(depthwiseToOihw(w.data as Float32Array, w.shape), new Float32Array(c), a, shift);
  const y = conv(
    g,
    x,
    {
      weight: folded.weight,
      wshape: [c, 1, w.shape[0], w.shape[1]],
      bias: folded.bias,
      stride,
      padding: 'same',
      groups: c,
    },
    prefix,
  );
  return relu6(g, y);
}

/** NCHW predictor output [B, A·k, H, W] → [B, H·W·A, k] in tfjs (NHWC) anchor order. */
function toAnchors(x: E.Tensor, k: number): E.Tensor {
  const [B] = x.shape as [number];
  return E.reshape(E.transpose(x, [0, 2, 3, 1]), [B, -1, k]);
}

export function buildSsdMobilenetV1(wm: WeightMap, batch = 1): E.Graph {
  const g = new E.Graph('ssd_mobilenetv1');
  const x = g.input('image', [batch, 3, SSD_INPUT, SSD_INPUT]);
  let out = ssdPointwise(g, x, wm, 'MobilenetV1/Conv2d_0_pointwise', 2);
  let conv11: E.Tensor | undefined;
  for (let i = 1; i <= 13; i++) {
    const stride = [2, 4, 6, 12].includes(i) ? 2 : 1;
    out = ssdDepthwise(g, out, wm, `MobilenetV1/Conv2d_${i}_depthwise`, stride);
    out = ssdPointwise(g, out, wm, `MobilenetV1/Conv2d_${i}_pointwise`, 1);
    if (i === 11) conv11 = out;
  }
  const p: E.Tensor[] = [];
  let y = out;
  for (let i = 0; i < 8; i++) {
    y = ssdPointwise(g, y, wm, `Prediction/Conv2d_${i}_pointwise`, i % 2 === 1 ? 2 : 1);
    p.push(y);
  }
  const sources = [conv11!, out, p[1], p[3], p[5], p[7]];
  const boxes: E.Tensor[] = [];
  const classes: E.Tensor[] = [];
  sources.forEach((src, i) => {
    boxes.push(toAnchors(dense(g, src, wm, `Prediction/BoxPredictor_${i}/BoxEncodingPredictor`, 1), 4));
    classes.push(toAnchors(dense(g, src, wm, `Prediction/BoxPredictor_${i}/ClassPredictor`, 1), 3));
  });
  const boxOut = E.concat(boxes, 1);
  const clsOut = E.concat(classes, 1);
  if (boxOut.shape[1] !== SSD_ANCHORS)
    throw new Error(`SSD graph has ${boxOut.shape[1]} anchors, expected ${SSD_ANCHORS}`);
  g.output(boxOut, 'box_encodings');
  g.output(clsOut, 'class_logits');
  return g;
}

/** The anchors (tfjs `Output/extra_dim`, [ymin, xmin, ymax, xmax] in 0..1 of the 512 square). */
export function ssdAnchors(wm: WeightMap): Float32Array {
  return wm.float('Output/extra_dim', [1, SSD_ANCHORS, 4]);
}

// ---------------------------------------------------------------- FaceLandmark68Net

export const LANDMARK_INPUT = 112;

function separable(g: E.Graph, x: E.Tensor, wm: WeightMap, prefix: string, stride: number): E.Tensor {
  const dw = wm.get(`${prefix}/depthwise_filter`);
  const pw = wm.get(`${prefix}/pointwise_filter`);
  const c = dw.shape[2];
  const mid = conv(
    g,
    x,
    {
      weight: depthwiseToOihw(dw.data as Float32Array, dw.shape),
      wshape: [c, 1, dw.shape[0], dw.shape[1]],
      stride,
      padding: 'same',
      groups: c,
    },
    `${prefix}/dw`,
  );
  return conv(
    g,
    mid,
    {
      weight: hwioToOihw(pw.data as Float32Array, pw.shape),
      wshape: [pw.shape[3], pw.shape[2], 1, 1],
      bias: wm.float(`${prefix}/bias`),
      stride: 1,
      padding: 'same',
    },
    `${prefix}/pw`,
  );
}

function denseBlock4(g: E.Graph, x: E.Tensor, wm: WeightMap, prefix: string, first: boolean): E.Tensor {
  let out1: E.Tensor;
  if (first) {
    const w = wm.get(`${prefix}/conv0/filters`);
    out1 = conv(
      g,
      x,
      {
        weight: hwioToOihw(w.data as Float32Array, w.shape),
        wshape: [w.shape[3], w.shape[2], w.shape[0], w.shape[1]],
        bias: wm.float(`${prefix}/conv0/bias`),
        stride: 2,
        padding: 'same',
      },
      `${prefix}/conv0`,
    );
  } else {
    out1 = separable(g, x, wm, `${prefix}/conv0`, 2);
  }
  out1 = E.relu(out1);
  const out2 = separable(g, out1, wm, `${prefix}/conv1`, 1);
  const in3 = E.relu(E.add(out1, out2));
  const out3 = separable(g, in3, wm, `${prefix}/conv2`, 1);
  const in4 = E.relu(E.add(out1, E.add(out2, out3)));
  const out4 = separable(g, in4, wm, `${prefix}/conv3`, 1);
  return E.relu(E.add(out1, E.add(out2, E.add(out3, out4))));
}

export function buildFaceLandmark68(wm: WeightMap, batch = 1): E.Graph {
  const g = new E.Graph('face_landmark_68');
  const x = g.input('face', [batch, 3, LANDMARK_INPUT, LANDMARK_INPUT]);
  let out = denseBlock4(g, x, wm, 'dense0', true);
  out = denseBlock4(g, out, wm, 'dense1', false);
  out = denseBlock4(g, out, wm, 'dense2', false);
  out = denseBlock4(g, out, wm, 'dense3', false);
  out = E.avgPool2d(out, 7, 2);
  const feat = E.reshape(out, [batch, -1]);
  const fc = E.matmul(feat, g.constant(wm.float('fc/weights', [256, 136]), [256, 136], 'fc.w'));
  g.output(E.add(fc, g.constant(wm.float('fc/bias', [136]), [136], 'fc.b')), 'landmarks');
  return g;
}

// ---------------------------------------------------------------- FaceRecognitionNet

export const RECOGNITION_INPUT = 150;

function recConv(
  g: E.Graph,
  x: E.Tensor,
  wm: WeightMap,
  prefix: string,
  stride: number,
  padding: 'same' | 'valid',
  relu: boolean,
): E.Tensor {
  const w = wm.get(`${prefix}/conv/filters`);
  const cout = w.shape[3];
  const folded = foldAffine(
    hwioToOihw(w.data as Float32Array, w.shape),
    wm.float(`${prefix}/conv/bias`, [cout]),
    wm.float(`${prefix}/scale/weights`, [cout]),
    wm.float(`${prefix}/scale/biases`, [cout]),
  );
  const y = conv(
    g,
    x,
    {
      weight: folded.weight,
      wshape: [cout, w.shape[2], w.shape[0], w.shape[1]],
      bias: folded.bias,
      stride,
      padding,
    },
    prefix,
  );
  return relu ? E.relu(y) : y;
}

function residual(g: E.Graph, x: E.Tensor, wm: WeightMap, prefix: string): E.Tensor {
  const out = recConv(g, x, wm, `${prefix}/conv1`, 1, 'same', true);
  return E.relu(E.add(recConv(g, out, wm, `${prefix}/conv2`, 1, 'same', false), x));
}

function residualDown(g: E.Graph, x: E.Tensor, wm: WeightMap, prefix: string): E.Tensor {
  let out = recConv(g, x, wm, `${prefix}/conv1`, 2, 'valid', true);
  out = recConv(g, out, wm, `${prefix}/conv2`, 1, 'same', false);
  let pooled = E.avgPool2d(x, 2, 2);
  const [, co, ho, wo] = out.shape as number[];
  const [, cp, hp, wp] = pooled.shape as number[];
  // Odd sizes: the strided valid conv is one smaller than the pooled shortcut; face-api pads the conv
  // output with a zero row and column at the bottom/right.
  if (ho !== hp || wo !== wp) out = E.pad(out, [0, 0, 0, 0, 0, 0, hp - ho, wp - wo]);
  // More output channels than input: the shortcut gets zero channels appended.
  if (co !== cp) pooled = E.pad(pooled, [0, 0, 0, 0, 0, co - cp, 0, 0]);
  return E.relu(E.add(pooled, out));
}

export function buildFaceRecognition(wm: WeightMap, batch = 1): E.Graph {
  const g = new E.Graph('face_recognition');
  const x = g.input('face', [batch, 3, RECOGNITION_INPUT, RECOGNITION_INPUT]);
  let out = recConv(g, x, wm, 'conv32_down', 2, 'valid', true);
  out = maxPoolValid(g, out, 3, 2);
  out = residual(g, out, wm, 'conv32_1');
  out = residual(g, out, wm, 'conv32_2');
  out = residual(g, out, wm, 'conv32_3');
  out = residualDown(g, out, wm, 'conv64_down');
  out = residual(g, out, wm, 'conv64_1');
  out = residual(g, out, wm, 'conv64_2');
  out = residual(g, out, wm, 'conv64_3');
  out = residualDown(g, out, wm, 'conv128_down');
  out = residual(g, out, wm, 'conv128_1');
  out = residual(g, out, wm, 'conv128_2');
  out = residualDown(g, out, wm, 'conv256_down');
  out = residual(g, out, wm, 'conv256_1');
  out = residual(g, out, wm, 'conv256_2');
  out = residualDown(g, out, wm, 'conv256_down_out');
  const pooled = E.reduceMean(out, [2, 3]);
  const fc = E.matmul(pooled, g.constant(wm.float('fc', [256, 128]), [256, 128], 'fc.w'));
  g.output(fc, 'descriptor');
  return g;
}

// ---------------------------------------------------------------- FaceExpressionNet, AgeGenderNet (utility check)

export const ATTRIBUTE_INPUT = 112;

/**
 * FaceExpressionNet (112×112): the landmark net's feature extractor (four dense blocks, its own weights),
 * 7×7/2 average pool, FC 256→7, softmax over face-api's seven expressions.
 */
export function buildFaceExpression(wm: WeightMap, batch = 1): E.Graph {
  const g = new E.Graph('face_expression');
  const x = g.input('face', [batch, 3, ATTRIBUTE_INPUT, ATTRIBUTE_INPUT]);
  let out = denseBlock4(g, x, wm, 'dense0', true);
  out = denseBlock4(g, out, wm, 'dense1', false);
  out = denseBlock4(g, out, wm, 'dense2', false);
  out = denseBlock4(g, out, wm, 'dense3', false);
  const feat = E.reshape(E.avgPool2d(out, 7, 2), [batch, -1]);
  const fc = E.add(
    E.matmul(feat, g.constant(wm.float('fc/weights', [256, 7]), [256, 7], 'fc.w')),
    g.constant(wm.float('fc/bias', [7]), [7], 'fc.b'),
  );
  g.output(E.softmax(fc, -1), 'expressions');
  return g;
}

/** MaxPool 3×3/2 with TF 'same' padding (ONNX pads with −∞, which is TF's semantics). */
function maxPoolSame3x3s2(g: E.Graph, x: E.Tensor): E.Tensor {
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const pad = (n: number): [number, number] => {
    const total = Math.max((Math.ceil(n / 2) - 1) * 2 + 3 - n, 0);
    return [Math.floor(total / 2), total - Math.floor(total / 2)];
  };
  const [t, b] = pad(H);
  const [l, r] = pad(W);
  return g.node1('MaxPool', [x], [N, C, Math.ceil(H / 2), Math.ceil(W / 2)], 'float32', {
    kernel_shape: [3, 3],
    strides: [2, 2],
    pads: [t, l, b, r],
  });
}

/** Conv with `<prefix>/filters` + `<prefix>/bias`, TF 'same' padding. */
function filtersConv(g: E.Graph, x: E.Tensor, wm: WeightMap, prefix: string, stride: number): E.Tensor {
  const w = wm.get(`${prefix}/filters`);
  return conv(
    g,
    x,
    {
      weight: hwioToOihw(w.data as Float32Array, w.shape),
      wshape: [w.shape[3], w.shape[2], w.shape[0], w.shape[1]],
      bias: wm.float(`${prefix}/bias`),
      stride,
      padding: 'same',
    },
    prefix,
  );
}

function xceptionReduction(
  g: E.Graph,
  x: E.Tensor,
  wm: WeightMap,
  prefix: string,
  activate: boolean,
): E.Tensor {
  let out = activate ? E.relu(x) : x;
  out = separable(g, out, wm, `${prefix}/separable_conv0`, 1);
  out = separable(g, E.relu(out), wm, `${prefix}/separable_conv1`, 1);
  out = maxPoolSame3x3s2(g, out);
  return E.add(out, filtersConv(g, x, wm, `${prefix}/expansion_conv`, 2));
}

function xceptionMain(g: E.Graph, x: E.Tensor, wm: WeightMap, prefix: string): E.Tensor {
  let out = separable(g, E.relu(x), wm, `${prefix}/separable_conv0`, 1);
  out = separable(g, E.relu(out), wm, `${prefix}/separable_conv1`, 1);
  out = separable(g, E.relu(out), wm, `${prefix}/separable_conv2`, 1);
  return E.add(out, x);
}

/**
 * AgeGenderNet (112×112): TinyXception with 2 middle blocks (entry conv 3×3/2 + ReLU, two reduction blocks —
 * two separable convs, max-pool 3×3/2 'same', plus a 1×1/2 expansion shortcut —, two 3-conv residual blocks,
 * an exit reduction block, a separable conv to 512 + ReLU), 7×7/2 average pool, FC 512→1 (age in years) and
 * FC 512→2 + softmax (gender: [male, female]).
 */
export function buildAgeGender(wm: WeightMap, batch = 1): E.Graph {
  const g = new E.Graph('age_gender');
  const x = g.input('face', [batch, 3, ATTRIBUTE_INPUT, ATTRIBUTE_INPUT]);
  let out = E.relu(filtersConv(g, x, wm, 'entry_flow/conv_in', 2));
  out = xceptionReduction(g, out, wm, 'entry_flow/reduction_block_0', false);
  out = xceptionReduction(g, out, wm, 'entry_flow/reduction_block_1', true);
  out = xceptionMain(g, out, wm, 'middle_flow/main_block_0');
  out = xceptionMain(g, out, wm, 'middle_flow/main_block_1');
  out = xceptionReduction(g, out, wm, 'exit_flow/reduction_block', true);
  out = E.relu(separable(g, out, wm, 'exit_flow/separable_conv', 1));
  const feat = E.reshape(E.avgPool2d(out, 7, 2), [batch, -1]);
  const fc = (name: string, n: number) =>
    E.add(
      E.matmul(feat, g.constant(wm.float(`${name}/weights`, [512, n]), [512, n], `${name}.w`)),
      g.constant(wm.float(`${name}/bias`, [n]), [n], `${name}.b`),
    );
  g.output(fc('fc/age', 1), 'age');
  g.output(E.softmax(fc('fc/gender', 2), -1), 'gender');
  return g;
}
