/** The IR-SE50 backbone shared by ArcFace and the e4e encoder. */
export * from './backbone.js';
export * from './weights.js';
