import { createContext } from '../shared/context.js';
import { makeSweepHandler } from './handler.js';

export const handler = makeSweepHandler(createContext('sweeper'));
