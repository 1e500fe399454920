/** API Gateway HTTP API (payload v2) → Hono. */
import { handle } from 'hono/aws-lambda';
import { createContext } from '../shared/context.js';
import { createApp } from './app.js';

export const handler = handle(createApp(createContext('api')));
