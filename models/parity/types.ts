/**
 * Parity runner contract: one handler per case `kind` of a cases.json directory
 * (see test/fixtures/falco/README.md). Each handler computes the case with our networks and
 * compares every expectation with the tolerances of the fixtures README.
 */
export interface ParityCheck {
  /** Expectation name, e.g. "image", "grad_wp". */
  name: string;
  pass: boolean;
  /** Whatever metrics apply: maxAbsErr, relMaxErr, cosine, relL2... */
  metrics: Record<string, number>;
}

export interface ParityContext {
  /** Absolute path of the fixtures directory (where cases.json, *.npy and *.spec.json live). */
  dir: string;
  log: (msg: string) => void;
}

/** A case as it appears in cases.json (kind-specific fields stay loosely typed here). */
export interface ParityCase {
  name: string;
  kind: string;
  slow?: boolean;
  [k: string]: unknown;
}

export type ParityHandler = (c: ParityCase, ctx: ParityContext) => Promise<ParityCheck[]>;
