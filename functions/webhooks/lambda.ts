import { createContext } from '../shared/context.js';
import { makeWebhookHandler } from './handler.js';

// Needs ReportBatchItemFailures on the event source mapping (only infrastructure errors are reported).
export const handler = makeWebhookHandler(createContext('webhooks'));
