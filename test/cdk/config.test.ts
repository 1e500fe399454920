import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseS3Uri } from '../../cdk/config.js';

const from = (ctx: Record<string, unknown>) => (key: string) => ctx[key];

describe('loadConfig', () => {
  it('has defaults that scale to zero and keep dev data disposable', () => {
    const c = loadConfig(from({}));
    expect(c.stage).toBe('dev');
    expect(c.instanceTypes).toEqual(['g5.xlarge']);
    expect(c.minTasks).toBe(0);
    expect(c.maxTasks).toBe(4);
    expect(c.spot).toBe(false);
    expect(c.retentionDays).toBe(7);
    expect(c.jobVisibilitySeconds).toBe(900);
    expect(c.bundleUri).toBeUndefined();
    expect(c.retainData).toBe(false);
    expect(loadConfig(from({ stage: 'prod' })).retainData).toBe(true);
  });

  it('accepts CLI strings and JSON values alike', () => {
    const c = loadConfig(
      from({
        stage: 'staging',
        instanceType: 'g6.xlarge, g5.2xlarge',
        minTasks: '1',
        maxTasks: 10,
        spot: 'true',
        retentionDays: '30',
        logLevel: 'debug',
      }),
    );
    expect(c.instanceTypes).toEqual(['g6.xlarge', 'g5.2xlarge']);
    expect(c.minTasks).toBe(1);
    expect(c.maxTasks).toBe(10);
    expect(c.spot).toBe(true);
    expect(c.retentionDays).toBe(30);
    expect(c.logLevel).toBe('DEBUG');
  });

  it.each([
    [{ stage: 'Prod' }, 'stage'],
    [{ stage: 'a_b' }, 'stage'],
    [{ instanceType: 'm5.xlarge' }, 'instanceType'],
    [{ instanceType: 'g5g.xlarge' }, 'instanceType'],
    [{ instanceType: ' , ' }, 'instanceType'],
    [{ minTasks: '-1' }, 'minTasks'],
    [{ minTasks: '1.5' }, 'minTasks'],
    [{ maxTasks: 'many' }, 'maxTasks'],
    [{ minTasks: 5, maxTasks: 2 }, 'maxTasks'],
    [{ spot: 'yes' }, 'spot'],
    [{ retentionDays: 0 }, 'retentionDays'],
    [{ jobVisibilitySeconds: 50_000 }, 'jobVisibilitySeconds'],
    [{ bundleUri: 'https://bucket/models' }, 'bundleUri'],
    [{ bundleUri: 's3://' }, 'bundleUri'],
    [{ logLevel: 'TRACE' }, 'logLevel'],
    [{ alarmEmail: 'not-an-address' }, 'alarmEmail'],
    [{ stage: 42 }, 'stage'],
  ])('rejects %j with a ConfigError naming "%s"', (ctx, key) => {
    let err: unknown;
    try {
      loadConfig(from(ctx));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).key).toBe(key);
    expect((err as ConfigError).message).toContain(`"${key}"`);
  });
});

describe('parseS3Uri', () => {
  it('splits bucket and prefix', () => {
    expect(parseS3Uri('s3://models-bucket/falco/v3/')).toEqual({
      bucket: 'models-bucket',
      prefix: 'falco/v3/',
    });
    expect(parseS3Uri('s3://models-bucket')).toEqual({ bucket: 'models-bucket', prefix: '' });
    expect(() => parseS3Uri('models-bucket/x')).toThrow(ConfigError);
  });
});
