import { createContext } from '../shared/context.js';
import { makeDlqHandler } from './handler.js';

export const handler = makeDlqHandler(createContext('dlq'));
