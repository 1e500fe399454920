#!/usr/bin/env node
// CDK entry point: `npm run cdk -- synth|diff|deploy [-c stage=prod -c instanceType=g6.xlarge ...]`.
import { ConfigError } from '../config.js';
import { buildApp } from '../app.js';

try {
  buildApp().app.synth();
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(2);
  }
  throw err;
}
