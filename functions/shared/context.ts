/**
 * Everything a handler needs, built once per process. Lambda entries build it from the environment; the local
 * stack builds it the same way after pointing AWS_ENDPOINT_URL_* at the emulators.
 */
import { loadConfig, type Config } from './config.js';
import { createClients, type Clients } from './aws.js';
import { createLogger, type Log } from './logger.js';

export interface ServiceContext {
  cfg: Config;
  clients: Clients;
  log: Log;
  now: () => number;
}

export function createContext(
  service: string,
  env: NodeJS.ProcessEnv = process.env,
  overrides: Partial<ServiceContext> = {},
): ServiceContext {
  const cfg = overrides.cfg ?? loadConfig(env);
  return {
    cfg,
    clients: overrides.clients ?? createClients(cfg.region, env),
    log: overrides.log ?? createLogger(service, cfg.logLevel),
    now: overrides.now ?? Date.now,
  };
}
