/** Request/response schemas: the single source for validation and for the generated OpenAPI document. */
import { z } from '@hono/zod-openapi';
import { describeId, ID_PATTERNS } from '../shared/ids.js';
import { OPTION_RANGES as R } from '../shared/limits.js';
import { CONTENT_TYPE_LIST, OUTPUT_FORMATS } from '../pipeline/formats.js';

export const ProblemSchema = z
  .object({
    type: z.string().openapi({ example: 'https://falco.dev/problems/too-many-pixels' }),
    title: z.string().openapi({ example: 'Unprocessable Content' }),
    status: z.number().int().openapi({ example: 422 }),
    detail: z.string().openapi({ example: 'image 1: 10000×10000 = 100.0 MP exceeds the 40.0 MP limit' }),
    instance: z.string().optional(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .openapi('Problem');

export const OutputFormatSchema = z.enum(OUTPUT_FORMATS);

/** Option ranges come from functions/shared/limits.ts, the same numbers the pipeline's resolveOptions checks. */
export const OptionsSchema = z
  .object({
    idMargin: z
      .number()
      .min(R.idMargin.min)
      .max(R.idMargin.max)
      .optional()
      .openapi({ description: 'ArcFace cosine margin m (FALCO default 0.0).', example: 0 }),
    steps: z
      .number()
      .int()
      .min(R.steps.min)
      .max(R.steps.max)
      .optional()
      .openapi({ description: 'Optimization steps per face (default 50).', example: 50 }),
    lambdaId: z
      .number()
      .min(R.lambdaId.min)
      .max(R.lambdaId.max)
      .optional()
      .openapi({ description: 'Identity loss weight λ_id (default 10).', example: 10 }),
    lambdaAttr: z
      .number()
      .min(R.lambdaAttr.min)
      .max(R.lambdaAttr.max)
      .optional()
      .openapi({ description: 'Attribute loss weight λ_attr (default 0.1).' }),
    layers: z
      .tuple([
        z.number().int().min(R.layers.min).max(R.layers.max),
        z
          .number()
          .int()
          .min(R.layers.min + 1)
          .max(R.layers.max),
      ])
      .refine(([a, b]) => a < b, { message: 'layer range [start, end) needs start < end' })
      .optional()
      .openapi({ description: 'Trainable W+ layer range [start, end) (default [3, 8]).', example: [3, 8] }),
    lr: z
      .number()
      .min(R.lr.min)
      .max(R.lr.max)
      .optional()
      .openapi({ description: 'Adam learning rate (default 0.01).' }),
    seed: z.number().int().min(R.seed.min).max(R.seed.max).optional().openapi({ example: 42 }),
    format: OutputFormatSchema.optional().openapi({
      description: 'Output encoding; defaults to the input format.',
    }),
    smallFaces: z
      .enum(['falco', 'blur', 'pixelate', 'fill'])
      .optional()
      .openapi({ description: 'How faces too small or turned for the generator are covered.' }),
    onRecognisable: z.enum(['fail', 'obscure']).optional().openapi({
      description: 'A face still recognisable after every retry: fail the image, or obscure the face.',
    }),
    onResidual: z
      .enum(['anonymize', 'fail'])
      .optional()
      .openapi({ description: 'A face found on the output that overlaps no replaced region.' }),
  })
  .strict()
  .openapi('Options');

export const UploadIdSchema = z
  .string()
  .regex(ID_PATTERNS.upl, describeId('upl'))
  .openapi({ example: 'upl_01JD2S5X7Z9QK3M4N5P6R7S8T9' });

export const CreateJobJsonSchema = z
  .object({
    images: z
      .array(z.object({ uploadId: UploadIdSchema }).strict())
      .min(1)
      .openapi({ description: 'Images previously uploaded with POST /v1/uploads.' }),
    options: OptionsSchema.optional(),
    webhook: z.string().max(2048).optional().openapi({
      description: 'HTTPS URL that receives job.completed / job.failed (Standard Webhooks signed).',
      example: 'https://example.com/hooks/falco',
    }),
  })
  .strict()
  .openapi('CreateJobJson');

export const CreateJobMultipartSchema = z
  .object({
    image: z.array(z.any().openapi({ type: 'string', format: 'binary' })).openapi({
      description:
        'One or more image files (JPEG, PNG, WebP), ≤ 4 MiB in total (the Lambda 6 MB request cap, after base64); larger files go through POST /v1/uploads.',
    }),
    options: z
      .string()
      .optional()
      .openapi({ description: 'Options as a JSON string.', example: '{"steps":50,"seed":42}' }),
    webhook: z.string().optional(),
  })
  .openapi('CreateJobMultipart');

export const CreateUploadSchema = z
  .object({
    contentType: z.enum(CONTENT_TYPE_LIST),
    bytes: z
      .number()
      .int()
      .min(1)
      .optional()
      .openapi({ description: 'Expected size; refused early when above the limit.' }),
  })
  .strict()
  .openapi('CreateUpload');

export const UploadSchema = z
  .object({
    id: z.string(),
    method: z.literal('POST'),
    url: z.string().openapi({
      description: 'Presigned S3 POST target: send `fields` then the file as `file` (multipart/form-data).',
    }),
    fields: z.record(z.string(), z.string()),
    maxBytes: z.number().int(),
    expiresAt: z.string(),
  })
  .openapi('Upload');

const RecognizerVerdictSchema = z
  .object({
    recognizer: z.string().openapi({ example: 'faceapi-128' }),
    distance: z.number(),
    threshold: z.number(),
    falseMatchRate: z.number(),
    recognisable: z.boolean(),
  })
  .openapi('RecognizerVerdict');

const FaceAttributesSchema = z
  .object({
    age: z.number().openapi({ description: "Years (face-api's age/gender net)." }),
    gender: z.enum(['male', 'female']),
    genderScore: z.number().openapi({ description: 'Probability of `gender`, 0.5..1.' }),
    expression: z.string().openapi({
      description:
        "Most likely of face-api's 7 expressions (neutral, happy, sad, angry, fearful, disgusted, surprised).",
      example: 'happy',
    }),
    expressionScore: z.number().openapi({ description: 'Probability of `expression`.' }),
    expressions: z
      .record(z.string(), z.number())
      .optional()
      .openapi({ description: 'Probability of each of the 7 expressions.' }),
    pose: z.object({ yaw: z.number(), pitch: z.number(), roll: z.number() }).openapi({
      description:
        'Head pose from the 68 landmarks, degrees: yaw > 0 nose towards the image right, pitch > 0 up, roll > 0 counter-clockwise.',
    }),
  })
  .openapi('FaceAttributes');

const AttributeChangeSchema = z
  .object({
    ageDelta: z.number().openapi({ description: 'anonymized − original, years.' }),
    genderKept: z.boolean(),
    expressionKept: z.boolean(),
    poseDeltaDeg: z.number().openapi({ description: 'Largest of |Δyaw|, |Δpitch|, |Δroll|, degrees.' }),
  })
  .openapi('AttributeChange');

const FaceSchema = z
  .object({
    index: z.number().int(),
    box: z.object({ x: z.number(), y: z.number(), width: z.number(), height: z.number() }),
    score: z.number().openapi({ description: "The SSD detector's score for this face." }),
    confirmedBy: z
      .object({ detector: z.literal('blazeface'), score: z.number(), faceMesh: z.number().optional() })
      .optional()
      .openapi({
        description:
          "Present when the SSD scored the face under its threshold (an occluded, blurred or tilted face) and a second detector family confirmed it: which one, and its score. When the SSD did not see the face at all (its score is 0) and BlazeFace found it, `faceMesh` is the third vote: FaceMesh's face flag.",
      }),
    losses: z.array(z.array(z.number())),
    identityDistance: z.number(),
    reidentified: z.boolean(),
    attempts: z.number().int(),
    timingsMs: z.record(z.string(), z.number()),
    method: z.enum(['falco', 'blur', 'pixelate', 'fill']).optional().openapi({
      description:
        "How the face was covered: 'falco' = replaced by a generated face; the others are fallbacks (see methodReason).",
    }),
    methodReason: z.string().optional().openapi({
      description:
        "Why a fallback covered the face: 'small' (below the size FALCO's alignment needs), 'landmarks' (unreliable), 'recognisable' (still recognisable after the retries), 'residual' (found by the residual scan).",
    }),
    recognizers: z.array(RecognizerVerdictSchema).optional(),
    attributes: z
      .object({
        original: FaceAttributesSchema,
        anonymized: FaceAttributesSchema,
        change: AttributeChangeSchema,
      })
      .optional()
      .openapi({
        description:
          "The utility check: what FALCO promises to keep (age, gender, expression, head pose), measured by nets independent of the optimisation on the original face and on the returned pixels, and the change. Only for faces replaced by FALCO (method 'falco'); absent for fallback-covered faces, which give utility up by design.",
      }),
    residual: z.boolean().optional().openapi({
      description: 'Found by the residual scan on the output (missed by detection), then covered.',
    }),
  })
  .openapi('FaceReport');

export const ReportSchema = z
  .object({
    width: z.number().int(),
    height: z.number().int(),
    format: OutputFormatSchema,
    faces: z.array(FaceSchema),
    outcome: z.enum(['ok', 'no_faces']),
    bundle: z.object({ id: z.string(), demo: z.boolean() }),
    timingsMs: z.record(z.string(), z.number()),
    provider: z
      .enum(['cuda', 'cpu'])
      .optional()
      .openapi({ description: 'Where the models ran for this image (a GPU worker reports cuda).' }),
    facesFound: z.number().int().optional().openapi({ description: 'Faces found by detection.' }),
    residualFaces: z
      .number()
      .int()
      .optional()
      .openapi({ description: 'Faces the residual scan found on the output that detection had missed.' }),
  })
  .openapi('ImageReport');

export const ImageSchema = z
  .object({
    id: z.string(),
    index: z.number().int(),
    filename: z.string().nullable(),
    status: z.enum(['queued', 'processing', 'done', 'failed']),
    progress: z.number().openapi({ description: '0..1' }),
    stage: z
      .string()
      .nullable()
      .openapi({
        description:
          'What the image is doing: waiting_for_worker (queued while no GPU worker runs: the fleet scales to zero ' +
          'when idle, and a cold start (GPU instance boot, image pull, model download) takes 5-10 minutes), then ' +
          'decode, detect, align, invert, optimize, render, paste, encode, verify.',
      }),
    estimatedWaitSeconds: z.number().int().optional().openapi({
      description: 'With waiting_for_worker: seconds left of a typical cold start (at least 60).',
    }),
    input: z.object({
      format: OutputFormatSchema,
      width: z.number().int(),
      height: z.number().int(),
      bytes: z.number().int(),
    }),
    result: z.object({ url: z.string(), contentType: z.string(), expiresAt: z.string() }).nullable(),
    reportUrl: z.string().nullable(),
    report: ReportSchema.nullable(),
    error: z.object({ code: z.string(), detail: z.string() }).nullable(),
  })
  .openapi('Image');

const CountsSchema = z.object({
  total: z.number().int(),
  queued: z.number().int(),
  processing: z.number().int(),
  done: z.number().int(),
  failed: z.number().int(),
});

export const JobSchema = z
  .object({
    id: z.string(),
    object: z.literal('job'),
    status: z.enum(['queued', 'running', 'completed', 'failed']),
    createdAt: z.string(),
    updatedAt: z.string(),
    completedAt: z.string().nullable(),
    options: OptionsSchema,
    webhook: z.object({ url: z.string(), status: z.string(), attempts: z.number().int() }).nullable(),
    counts: CountsSchema,
    progress: z.number().openapi({ description: 'Mean image progress, 0..1.' }),
    images: z.array(ImageSchema),
  })
  .openapi('Job');

export const JobSummarySchema = z
  .object({
    id: z.string(),
    object: z.literal('job'),
    status: z.enum(['queued', 'running', 'completed', 'failed']),
    createdAt: z.string(),
    completedAt: z.string().nullable(),
    imageCount: z.number().int(),
  })
  .openapi('JobSummary');

export const JobListSchema = z
  .object({ data: z.array(JobSummarySchema), nextCursor: z.string().nullable() })
  .openapi('JobList');

export const UsageSchema = z
  .object({ month: z.string().openapi({ example: '2026-11' }), billableImages: z.number().int() })
  .openapi('Usage');

/** Checked in the handler (an id of the wrong format is a job that does not exist: 404, not 400). */
export const JobIdParam = z.object({
  id: z.string().openapi({
    param: { name: 'id', in: 'path' },
    pattern: ID_PATTERNS.job.source,
    example: 'job_01JD2S5X7Z9QK3M4N5P6R7S8T9',
  }),
});

export const ListQuery = z.object({
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(100)
    .optional()
    .openapi({ param: { name: 'limit', in: 'query' }, example: 20 }),
  cursor: z
    .string()
    .max(2048)
    .optional()
    .openapi({ param: { name: 'cursor', in: 'query' } }),
});

export const UsageQuery = z.object({
  month: z
    .string()
    .regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'month must be YYYY-MM')
    .optional()
    .openapi({ param: { name: 'month', in: 'query' }, example: '2026-11' }),
});

export const problemResponses = (...codes: number[]) =>
  Object.fromEntries(
    codes.map((code) => [
      code,
      { description: 'Problem', content: { 'application/problem+json': { schema: ProblemSchema } } },
    ]),
  );
