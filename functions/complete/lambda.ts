import { createContext } from '../shared/context.js';
import { makeCompleteHandler } from './handler.js';

export const handler = makeCompleteHandler(createContext('complete'));
