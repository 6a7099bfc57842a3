// The scheduler alone, driven by a fake runner (no worker, no ONNX): each test sees the step
// requests the scheduler sends and answers them by hand. The clock is Date.now, mocked.
import { EngineError } from '../../src/engine/errors';
import { FinishReason, SequenceOutput, StepRequest, StepResult } from '../../src/engine/runner/protocol';
import { StepFailedError, StepRunner } from '../../src/engine/runner/step_runner';
import { resolveSamplingParams } from '../../src/engine/sampling/params';
import { Scheduler, SchedulerOptions, SequenceImage, SequenceInput, SequenceTimings } from '../../src/engine/scheduler';

interface Call {
  request: StepRequest;
  resolve(result: StepResult): void;
  reject(error: Error): void;
}

/** A runner whose steps wait until the test answers them. */
class FakeRunner implements StepRunner {
  readonly info = { hiddenSize: 4 };
  private readonly calls: Call[] = [];
  private readonly waiters: ((call: Call) => void)[] = [];

  step(request: StepRequest): Promise<StepResult> {
    return new Promise((resolve, reject) => {
      const call = { request, resolve, reject };
      const waiter = this.waiters.shift();
      if (waiter) waiter(call);
      else this.calls.push(call);
    });
  }

  /** The next step the scheduler sends (waiting for it if it has not been sent yet). */
  next(): Promise<Call> {
    const call = this.calls.shift();
    if (call) return Promise.resolve(call);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Steps sent and not yet taken by `next`. */
  get unanswered(): number {
    return this.calls.length;
  }
}

function result(outputs: SequenceOutput[], extra: Partial<StepResult> = {}): StepResult {
  return {
    outputs,
    prefilled: [],
    prefillMs: 0,
    visionMs: 0,
    decodeMs: 0,
    batchSize: 0,
    decodeSteps: 1,
    prefillTokens: 0,
    imagesEncoded: 0,
    imagesFromCache: 0,
    promptsFromCache: 0,
    kvBytes: 0,
    ...extra,
  };
}

/** One token for each sequence in the request's batch (admitted and running), none finishing. */
function tokenEach(request: StepRequest, running: number[], token = 7): StepResult {
  const ids = [...running, ...request.admit.map((a) => a.seqId)];
  return result(ids.map((seqId) => ({ seqId, tokens: [token] })), { batchSize: ids.length, prefilled: request.admit.map((a) => a.seqId) });
}

class Recorder {
  tokens: number[] = [];
  stopped = false;
  finish?: FinishReason;
  timings?: SequenceTimings;
  error?: EngineError;
  readonly callbacks = {
    onTokens: (tokens: number[], stopped: boolean) => {
      this.tokens.push(...tokens);
      this.stopped = stopped;
    },
    onFinish: (reason: FinishReason, timings: SequenceTimings) => {
      this.finish = reason;
      this.timings = timings;
    },
    onError: (error: EngineError) => {
      this.error = error;
    },
  };
}

function input(promptTokens: number, extra: Partial<SequenceInput> = {}): SequenceInput {
  return {
    inputIds: Array.from({ length: promptTokens }, (_, i) => 100 + i),
    positionIds: Array.from({ length: 3 * promptTokens }, (_, i) => i % promptTokens),
    nextPosition: promptTokens,
    images: [],
    sampling: resolveSamplingParams({}),
    maxNewTokens: 16,
    vocabLimit: 1000,
    ...extra,
  };
}

const OPTIONS: SchedulerOptions = { maxBatchSize: 8, maxWaiting: 16, maxPrefillTokens: 1000, featureCacheBytes: 1 << 20 };

jest.setTimeout(5000); // a step the scheduler never sends makes a test hang, not pass

let clock = 1_000_000;
beforeEach(() => {
  clock = 1_000_000;
  jest.spyOn(Date, 'now').mockImplementation(() => clock);
});
afterEach(() => jest.restoreAllMocks());

function setup(options: Partial<SchedulerOptions> = {}) {
  const runner = new FakeRunner();
  const scheduler = new Scheduler(runner, { ...OPTIONS, ...options });
  const submit = (seq: SequenceInput) => {
    const recorder = new Recorder();
    const id = scheduler.submit(seq, recorder.callbacks);
    return { id, recorder };
  };
  return { runner, scheduler, submit };
}

const admitted = (call: Call) => call.request.admit.map((a) => a.seqId);

describe('admission', () => {
  test('waiting requests are admitted first come, first served, as batch slots free up', async () => {
    const { runner, scheduler, submit } = setup({ maxBatchSize: 2 });
    const a = submit(input(3));
    const b = submit(input(3));
    const c = submit(input(3));
    const d = submit(input(3));

    // The first submission starts a step at once; the others wait for it.
    const first = await runner.next();
    expect(admitted(first)).toEqual([a.id]);
    expect(scheduler.waitingCount).toBe(3);
    first.resolve(tokenEach(first.request, []));

    const second = await runner.next();
    expect(admitted(second)).toEqual([b.id]); // a still runs: one free slot
    expect(scheduler.runningCount).toBe(2);
    second.resolve(result([{ seqId: a.id, tokens: [5], finish: 'length' }, { seqId: b.id, tokens: [6, 7] }]));

    const third = await runner.next();
    expect(admitted(third)).toEqual([c.id]); // a finished: its slot goes to c, not d
    expect(a.recorder.finish).toBe('length');
    expect(a.recorder.tokens).toEqual([7, 5]);
    third.resolve(result([{ seqId: b.id, tokens: [1], finish: 'stop' }, { seqId: c.id, tokens: [2], finish: 'length' }]));

    const fourth = await runner.next();
    expect(admitted(fourth)).toEqual([d.id]);
    expect(b.recorder.stopped).toBe(true);
    expect(b.recorder.finish).toBe('stop');
    fourth.resolve(result([{ seqId: d.id, tokens: [3], finish: 'length' }]));
    await scheduler.drain();
    expect(d.recorder.finish).toBe('length');
    expect(runner.unanswered).toBe(0);
  });

  test('the admission request carries the sequence as submitted', async () => {
    const { runner, submit } = setup();
    const seq = input(4, { maxNewTokens: 9, ignoreEos: true, vocabLimit: 321 });
    const { id } = submit(seq);
    const call = await runner.next();
    expect(call.request.admit).toEqual([
      { seqId: id, inputIds: seq.inputIds, positionIds: seq.positionIds, nextPosition: 4, images: [], sampling: seq.sampling, maxNewTokens: 9, ignoreEos: true, vocabLimit: 321 },
    ]);
    expect(call.request.drop).toEqual([]);
    expect(call.request.decodeSteps).toBe(0); // the batch starts with it: its first token comes back after the prefill
    call.resolve(result([{ seqId: id, tokens: [1], finish: 'length' }]));
  });

  test('a full queue refuses submissions as overloaded, with a retry hint', async () => {
    const { runner, scheduler, submit } = setup({ maxBatchSize: 1, maxWaiting: 2 });
    const running = submit(input(1));
    submit(input(1));
    submit(input(1));
    expect(scheduler.waitingCount).toBe(2);
    expect(() => submit(input(1))).toThrow(expect.objectContaining({ kind: 'overloaded', code: 'queue_full', retryAfterSeconds: expect.any(Number) }));
    const call = await runner.next();
    call.reject(new Error('stop here'));
    await runner.next().then((next) => next.reject(new Error('stop here')));
    await runner.next().then((next) => next.reject(new Error('stop here')));
    await scheduler.drain();
    expect(running.recorder.error?.code).toBe('inference_failed');
  });

  test('a draining scheduler takes no new requests and resolves when the last one finishes', async () => {
    const { runner, scheduler, submit } = setup();
    const a = submit(input(2));
    let drained = false;
    const draining = scheduler.drain().then(() => (drained = true));
    expect(scheduler.isDraining).toBe(true);
    expect(() => submit(input(2))).toThrow(expect.objectContaining({ kind: 'overloaded', code: 'shutting_down' }));
    const call = await runner.next();
    call.resolve(tokenEach(call.request, []));
    const next = await runner.next();
    expect(drained).toBe(false);
    next.resolve(result([{ seqId: a.id, tokens: [1], finish: 'length' }]));
    await draining;
    expect(a.recorder.finish).toBe('length');
  });
});

describe('prefill budget', () => {
  test('one step admits waiting requests while their prompt tokens fit the budget, and always at least one', async () => {
    const { runner, submit } = setup({ maxPrefillTokens: 10 });
    const blocker = submit(input(30)); // over the budget alone: admitted anyway
    const b = submit(input(6));
    const c = submit(input(5));
    const d = submit(input(20));
    const e = submit(input(4));

    const first = await runner.next();
    expect(admitted(first)).toEqual([blocker.id]);
    first.resolve(tokenEach(first.request, []));
    const second = await runner.next();
    expect(admitted(second)).toEqual([b.id]); // 6 + 5 > 10
    second.resolve(tokenEach(second.request, [blocker.id]));
    const third = await runner.next();
    expect(admitted(third)).toEqual([c.id]); // 5 + 20 > 10; e (4) does not overtake d
    third.resolve(tokenEach(third.request, [blocker.id, b.id]));
    const fourth = await runner.next();
    expect(admitted(fourth)).toEqual([d.id]);
    fourth.resolve(tokenEach(fourth.request, [blocker.id, b.id, c.id]));
    const fifth = await runner.next();
    expect(admitted(fifth)).toEqual([e.id]);
    fifth.reject(new Error('end'));
  });

  test('requests that fit together are admitted in one step', async () => {
    const { runner, submit } = setup({ maxPrefillTokens: 10 });
    const blocker = submit(input(1));
    const b = submit(input(4));
    const c = submit(input(6));
    const d = submit(input(1));
    const first = await runner.next();
    first.resolve(tokenEach(first.request, []));
    const second = await runner.next();
    expect(admitted(second)).toEqual([b.id, c.id]); // 4 + 6 = 10 fits; + 1 does not
    second.resolve(tokenEach(second.request, [blocker.id]));
    const third = await runner.next();
    expect(admitted(third)).toEqual([d.id]);
    third.reject(new Error('end'));
  });
});

describe('joining a running batch', () => {
  test('a request submitted while others decode joins at the next step, and outputs reach their own sequence', async () => {
    const { runner, scheduler, submit } = setup();
    const a = submit(input(2));
    const first = await runner.next();
    first.resolve(result([{ seqId: a.id, tokens: [10, 11] }], { prefilled: [a.id], prefillMs: 5, batchSize: 1, decodeMs: 2 }));

    // a decodes alone; b arrives during that step.
    const second = await runner.next();
    expect(admitted(second)).toEqual([]);
    clock += 3;
    const b = submit(input(2));
    expect(scheduler.waitingCount).toBe(1);
    second.resolve(result([{ seqId: a.id, tokens: [12] }], { batchSize: 1, decodeMs: 2 }));

    const third = await runner.next();
    expect(admitted(third)).toEqual([b.id]);
    expect(third.request.drop).toEqual([]);
    expect(third.request.decodeSteps).toBe(1); // a keeps decoding; the newcomer's first token does not wait for a call of many
    expect(scheduler.runningCount).toBe(2);
    third.resolve(
      result(
        [
          { seqId: a.id, tokens: [13], finish: 'length' },
          { seqId: b.id, tokens: [20, 21] },
        ],
        { prefilled: [b.id], prefillMs: 7, batchSize: 2, decodeMs: 4 },
      ),
    );
    const fourth = await runner.next();
    fourth.resolve(result([{ seqId: b.id, tokens: [22], finish: 'stop' }], { batchSize: 1, decodeMs: 1 }));
    await scheduler.drain();

    expect(a.recorder.tokens).toEqual([10, 11, 12, 13]);
    expect(b.recorder.tokens).toEqual([20, 21, 22]);
    // Each sequence is charged its own prefill and every decode run it took part in.
    expect(a.recorder.timings).toEqual({ queueMs: 0, prefillMs: 5, decodeMs: 8 });
    expect(b.recorder.timings).toEqual({ queueMs: 0, prefillMs: 7, decodeMs: 5 });
  });

  test('queue time runs from submission to admission', async () => {
    const { runner, scheduler, submit } = setup({ maxBatchSize: 1 });
    const a = submit(input(1));
    const b = submit(input(1));
    const first = await runner.next();
    clock += 40;
    first.resolve(result([{ seqId: a.id, tokens: [1], finish: 'length' }]));
    const second = await runner.next();
    expect(admitted(second)).toEqual([b.id]);
    second.resolve(result([{ seqId: b.id, tokens: [1], finish: 'length' }]));
    await scheduler.drain();
    expect(a.recorder.timings?.queueMs).toBe(0);
    expect(b.recorder.timings?.queueMs).toBe(40);
  });
});

describe('deadlines', () => {
  test('a request still waiting after its deadline fails with a timeout and is never admitted', async () => {
    const { runner, scheduler, submit } = setup({ maxBatchSize: 1 });
    const a = submit(input(1));
    const onTime = submit(input(1, { deadline: clock + 10 }));
    const late = submit(input(1, { deadline: clock + 10 }));
    const first = await runner.next();
    clock += 10; // at the deadline: not yet past it
    first.resolve(result([{ seqId: a.id, tokens: [1], finish: 'length' }]));
    const second = await runner.next();
    expect(admitted(second)).toEqual([onTime.id]);
    expect(late.recorder.error).toBeUndefined();
    clock += 1;
    second.resolve(result([{ seqId: onTime.id, tokens: [1], finish: 'length' }]));
    await scheduler.drain();
    expect(onTime.recorder.finish).toBe('length');
    expect(late.recorder.error).toMatchObject({ kind: 'timeout', code: 'deadline_exceeded', message: 'the request waited in the queue past its deadline' });
    expect(late.recorder.tokens).toEqual([]);
    expect(runner.unanswered).toBe(0); // no step was sent for the late request
  });

  test('a running request past its deadline is dropped from the batch at the next step', async () => {
    const { runner, scheduler, submit } = setup();
    const a = submit(input(1, { deadline: clock + 10 }));
    const b = submit(input(1));
    const first = await runner.next();
    first.resolve(tokenEach(first.request, []));
    const second = await runner.next();
    expect(second.request.drop).toEqual([]);
    clock += 11;
    second.resolve(tokenEach(second.request, [a.id]));
    const third = await runner.next();
    expect(third.request.drop).toEqual([a.id]);
    expect(a.recorder.error).toMatchObject({ kind: 'timeout', code: 'deadline_exceeded', message: 'the request did not finish before its deadline' });
    expect(scheduler.runningCount).toBe(1);
    third.resolve(result([{ seqId: b.id, tokens: [2], finish: 'length' }]));
    await scheduler.drain();
    expect(a.recorder.tokens).toEqual([7, 7]);
    expect(a.recorder.finish).toBeUndefined();
    expect(b.recorder.finish).toBe('length');
  });

  test('when the only running request is dropped, one step still tells the runner to drop it', async () => {
    const { runner, scheduler, submit } = setup();
    const a = submit(input(1, { deadline: clock + 10 }));
    const first = await runner.next();
    clock += 11;
    first.resolve(tokenEach(first.request, []));
    const second = await runner.next();
    expect(second.request).toEqual({ admit: [], drop: [a.id], evict: [], decodeSteps: 1 });
    second.resolve(result([], { decodeSteps: 0 }));
    await scheduler.drain();
    expect(a.recorder.error?.code).toBe('deadline_exceeded');
  });
});

describe('cancellation', () => {
  test('a request whose signal is already aborted is refused at submission', () => {
    const { scheduler, submit } = setup();
    const controller = new AbortController();
    controller.abort();
    expect(() => submit(input(1, { signal: controller.signal }))).toThrow(expect.objectContaining({ kind: 'cancelled', code: 'cancelled' }));
    expect(scheduler.waitingCount).toBe(0);
  });

  test('cancelling a waiting request fails it at once and takes it out of the queue', async () => {
    const { runner, scheduler, submit } = setup({ maxBatchSize: 1 });
    const a = submit(input(1));
    const controller = new AbortController();
    const b = submit(input(1, { signal: controller.signal }));
    const c = submit(input(1));
    controller.abort();
    expect(b.recorder.error).toMatchObject({ kind: 'cancelled', code: 'cancelled' });
    expect(scheduler.waitingCount).toBe(1);
    const first = await runner.next();
    first.resolve(result([{ seqId: a.id, tokens: [1], finish: 'length' }]));
    const second = await runner.next();
    expect(admitted(second)).toEqual([c.id]);
    expect(second.request.drop).toEqual([]); // the runner never knew b
    second.resolve(result([{ seqId: c.id, tokens: [1], finish: 'length' }]));
    await scheduler.drain();
  });

  test('cancelling a running request drops it at the next step; its last outputs still arrive', async () => {
    const { runner, scheduler, submit } = setup();
    const controller = new AbortController();
    const a = submit(input(1, { signal: controller.signal }));
    const b = submit(input(1));
    const first = await runner.next();
    first.resolve(tokenEach(first.request, []));
    const second = await runner.next();
    controller.abort();
    expect(a.recorder.error).toBeUndefined(); // the step in flight still counts it
    second.resolve(tokenEach(second.request, [a.id], 8));
    const third = await runner.next();
    expect(third.request.drop).toEqual([a.id]);
    expect(a.recorder.error).toMatchObject({ kind: 'cancelled', code: 'cancelled', message: 'the client went away' });
    expect(a.recorder.tokens).toEqual([7, 8]);
    third.resolve(result([{ seqId: b.id, tokens: [9], finish: 'length' }]));
    await scheduler.drain();
    expect(b.recorder.tokens).toEqual([8, 9]); // admitted at the second step
  });

  test('a consumer that throws is cancelled at the next step without stopping the batch', async () => {
    const { runner, scheduler, submit } = setup();
    const a = submit(input(1));
    const b = submit(input(1));
    a.recorder.callbacks.onTokens = () => {
      throw new Error('consumer broke');
    };
    const first = await runner.next();
    first.resolve(tokenEach(first.request, []));
    const second = await runner.next();
    expect(second.request.drop).toEqual([a.id]);
    expect(admitted(second)).toEqual([b.id]);
    expect(a.recorder.error).toMatchObject({ kind: 'cancelled', code: 'consumer_failed' });
    second.resolve(result([{ seqId: b.id, tokens: [1], finish: 'length' }]));
    await scheduler.drain();
    expect(b.recorder.finish).toBe('length');
  });
});

describe('feature cache', () => {
  // hiddenSize 4: an image of n tokens holds n * 4 * 4 bytes of features.
  const image = (key: string, tokens: number, pixels = true): SequenceImage => ({
    key,
    grid: [1, 2, tokens * 2],
    tokens,
    pixels: pixels ? new Float32Array([1, 2, 3]) : undefined,
  });

  async function runAlone(runner: FakeRunner, scheduler: Scheduler, submit: ReturnType<typeof setup>['submit'], seq: SequenceInput) {
    const { id, recorder } = submit(seq);
    const call = await runner.next();
    call.resolve(result([{ seqId: id, tokens: [1], finish: 'length' }]));
    await new Promise((resolve) => setImmediate(resolve)); // the loop goes idle
    expect(scheduler.runningCount + scheduler.waitingCount).toBe(0);
    return { request: call.request, recorder };
  }

  test('images are kept within the byte budget, least recently used evicted first, cached ones sent without pixels', async () => {
    const { runner, scheduler, submit } = setup({ featureCacheBytes: 64 });
    const run = (seq: SequenceInput) => runAlone(runner, scheduler, submit, seq);

    const first = input(3, { images: [image('k1', 2)] });
    const r1 = await run(first);
    expect(r1.request.admit[0].images).toEqual([{ key: 'k1', grid: [1, 2, 4], tokens: 2, pixels: new Float32Array([1, 2, 3]), cache: true }]);
    expect(r1.request.evict).toEqual([]);
    expect(first.images[0].pixels).toBeUndefined(); // handed to the runner

    const r2 = await run(input(3, { images: [image('k2', 2)] }));
    expect(r2.request.admit[0].images[0]).toMatchObject({ key: 'k2', cache: true });
    expect(r2.request.evict).toEqual([]);

    // k1 is cached: no pixels needed, and it becomes the most recently used.
    const r3 = await run(input(3, { images: [image('k1', 2, false)] }));
    expect(r3.request.admit[0].images).toEqual([{ key: 'k1', grid: [1, 2, 4], tokens: 2, cache: true }]);

    // k3 needs room: k2, now the least recently used, is evicted.
    const r4 = await run(input(3, { images: [image('k3', 2)] }));
    expect(r4.request.admit[0].images[0]).toMatchObject({ key: 'k3', cache: true });
    expect(r4.request.evict).toEqual(['k2']);

    // An image larger than the whole budget is used once and not kept; nothing is evicted for it.
    const r5 = await run(input(3, { images: [image('k4', 5)] }));
    expect(r5.request.admit[0].images[0]).toMatchObject({ key: 'k4', cache: false, pixels: new Float32Array([1, 2, 3]) });
    expect(r5.request.evict).toEqual([]);

    expect(scheduler.featureCacheStats).toEqual({ hits: 1, misses: 4, entries: 2, bytes: 64 });
    const r6 = await run(input(3, { images: [image('k2', 2)] }));
    expect(r6.request.admit[0].images[0]).toMatchObject({ key: 'k2', cache: true, pixels: new Float32Array([1, 2, 3]) });
    expect(r6.request.evict).toEqual(['k1']);
  });

  test('evictions decided while admitting several requests travel in that same step', async () => {
    const { runner, submit } = setup({ featureCacheBytes: 32 });
    const blocker = submit(input(1));
    submit(input(1, { images: [image('a', 2)] }));
    submit(input(1, { images: [image('b', 2)] }));
    const first = await runner.next();
    first.resolve(tokenEach(first.request, []));
    const second = await runner.next();
    expect(second.request.admit.map((a) => a.images[0].key)).toEqual(['a', 'b']);
    expect(second.request.evict).toEqual(['a']); // forgotten once this step's admissions used it
    second.reject(new StepFailedError({ kind: 'model_error', code: 'x', message: 'end' }, [blocker.id]));
  });
});

describe('decode steps per call', () => {
  test('while nobody waits, one call decodes as many steps as fit the budget at the recent cost of a step', async () => {
    const { runner, scheduler, submit } = setup(); // default budget 20 ms, at most 32 steps
    const a = submit(input(1));
    const steps: number[] = [];
    const answer = async (decodeMs: number, decodeSteps: number) => {
      const call = await runner.next();
      steps.push(call.request.decodeSteps);
      call.resolve(result([{ seqId: a.id, tokens: [1] }], { batchSize: 1, decodeMs, decodeSteps }));
    };
    await answer(0, 0); // admission into an empty batch: no decode run
    await answer(4, 1); // no measurement yet: one step. Then 4 ms a step
    await answer(10, 5); // 20 / 4 = 5. Then 0.8 * 4 + 0.2 * 2 = 3.6 ms a step
    await answer(50, 5); // floor(20 / 3.6) = 5. Then 0.8 * 3.6 + 0.2 * 10 = 4.88
    await answer(0, 0); // floor(20 / 4.88) = 4; a call that decoded nothing changes nothing
    await answer(100, 1); // 4 again. Then 0.8 * 4.88 + 20 = 23.9: more than the budget
    const last = await runner.next();
    steps.push(last.request.decodeSteps); // still at least one
    last.resolve(result([{ seqId: a.id, tokens: [1], finish: 'length' }]));
    await scheduler.drain();
    expect(steps).toEqual([0, 1, 5, 5, 4, 4, 1]);
  });

  test('the budget and the most steps a call takes are options', async () => {
    const { runner, scheduler, submit } = setup({ decodeCallBudgetMs: 1000, maxDecodeStepsPerCall: 8 });
    const a = submit(input(1));
    const first = await runner.next();
    first.resolve(result([{ seqId: a.id, tokens: [1] }], { decodeMs: 1, decodeSteps: 1 }));
    const second = await runner.next();
    expect(second.request.decodeSteps).toBe(8); // 1000 steps fit, 8 allowed
    second.resolve(result([{ seqId: a.id, tokens: [1] }], { decodeMs: 400, decodeSteps: 8 }));
    const third = await runner.next();
    expect(third.request.decodeSteps).toBe(8); // 0.8 * 1 + 0.2 * 50 = 10.8 ms: 92 fit, 8 allowed
    third.resolve(result([{ seqId: a.id, tokens: [1], finish: 'length' }]));
    await scheduler.drain();
  });

  test('a waiting request keeps calls to one decode run, so it joins soon', async () => {
    const { runner, scheduler, submit } = setup({ maxBatchSize: 1 });
    const a = submit(input(1));
    const first = await runner.next();
    first.resolve(result([{ seqId: a.id, tokens: [1] }], { decodeMs: 1, decodeSteps: 1 }));
    const second = await runner.next();
    expect(second.request.decodeSteps).toBe(20);
    const b = submit(input(1)); // waits: the batch is full
    second.resolve(result([{ seqId: a.id, tokens: [1] }], { decodeMs: 20, decodeSteps: 20 }));
    const third = await runner.next();
    expect(admitted(third)).toEqual([]);
    expect(third.request.decodeSteps).toBe(1);
    third.resolve(result([{ seqId: a.id, tokens: [1], finish: 'length' }]));
    const fourth = await runner.next();
    expect(admitted(fourth)).toEqual([b.id]);
    fourth.resolve(result([{ seqId: b.id, tokens: [1], finish: 'length' }]));
    await scheduler.drain();
  });
});

describe('failed steps', () => {
  test('a step that fails for some sequences fails those and keeps decoding the others', async () => {
    const { runner, scheduler, submit } = setup();
    const a = submit(input(1));
    const b = submit(input(1));
    const first = await runner.next();
    first.resolve(tokenEach(first.request, []));
    const second = await runner.next();
    expect(admitted(second)).toEqual([b.id]);
    second.resolve(tokenEach(second.request, [a.id]));
    const third = await runner.next();
    third.reject(new StepFailedError({ kind: 'model_error', code: 'row_failed', message: 'bad row' }, [a.id]));
    const fourth = await runner.next();
    expect(a.recorder.error).toMatchObject({ kind: 'model_error', code: 'row_failed' });
    expect(b.recorder.error).toBeUndefined();
    expect(scheduler.runningCount).toBe(1);
    fourth.resolve(result([{ seqId: b.id, tokens: [3], finish: 'length' }]));
    await scheduler.drain();
    expect(b.recorder.finish).toBe('length');
  });

  test('sequences admitted in a failed step fail with it even when the runner does not name them', async () => {
    const { runner, scheduler, submit } = setup();
    const a = submit(input(1));
    const b = submit(input(1));
    const first = await runner.next();
    first.resolve(tokenEach(first.request, []));
    const second = await runner.next();
    expect(admitted(second)).toEqual([b.id]);
    second.reject(new StepFailedError({ kind: 'model_error', code: 'prefill_failed', message: 'bad prompt' }, []));
    const third = await runner.next();
    expect(b.recorder.error).toMatchObject({ code: 'prefill_failed' });
    expect(a.recorder.error).toBeUndefined();
    third.resolve(result([{ seqId: a.id, tokens: [3], finish: 'length' }]));
    await scheduler.drain();
    expect(a.recorder.finish).toBe('length');
  });

  test('any other failure fails every running sequence and the ones just admitted', async () => {
    const observed: [number, number][] = [];
    const runner = new FakeRunner();
    const scheduler = new Scheduler(runner, OPTIONS, { onStep: (_result, waiting, running) => observed.push([waiting, running]) });
    const recorders = [new Recorder(), new Recorder()];
    scheduler.submit(input(1), recorders[0].callbacks);
    const first = await runner.next();
    scheduler.submit(input(1), recorders[1].callbacks);
    first.resolve(tokenEach(first.request, []));
    const second = await runner.next();
    expect(second.request.admit).toHaveLength(1);
    second.reject(new Error('onnx said no'));
    await scheduler.drain();
    for (const recorder of recorders) expect(recorder.error).toMatchObject({ kind: 'model_error', code: 'inference_failed', message: 'Error: onnx said no' });
    expect(scheduler.runningCount).toBe(0);
    expect(observed).toEqual([[1, 1]]); // the observer sees successful steps only
  });
});
