// What a `preparing` job is waiting for, and the work several jobs can wait for at once: one
// generation of a spatial-synth split, one setup of the trainer's environment, however many jobs
// need it. The work belongs to no job: a cancelled job stops waiting and the work goes on (its
// result is kept for the next job); only the manager's close() stops it.

/** Where a preparing job stands (GET /admin/train/<id> `preparing`, the events' `status`). */
export interface Preparing {
  /** `dataset`: a spatial-synth split is generated; `environment`: the trainer's environment (.venv) is made. */
  stage: 'dataset' | 'environment';
  /** What is happening now, in words (for the environment: the setup's latest output line). */
  message: string;
  /** Items generated so far and in all (dataset only). */
  done?: number;
  total?: number;
}

/** Hears a piece of work's progress; `line` is a line of its output, for the job's trainer.log. */
export type PreparingListener = (preparing: Preparing, line?: string) => void;

interface Running {
  promise: Promise<void>;
  listeners: Set<PreparingListener>;
  latest: Preparing;
  controller: AbortController;
}

export class SharedWork {
  private readonly running = new Map<string, Running>();

  /**
   * Wait for the work named `key`, starting it with `run` when none is under way. The listener
   * hears where it stands at once, then each report, until leave(). `done` settles with the work.
   */
  join(
    key: string,
    first: Preparing,
    listener: PreparingListener,
    run: (report: PreparingListener, signal: AbortSignal) => Promise<void>,
  ): { done: Promise<void>; leave(): void } {
    let work = this.running.get(key);
    if (!work) {
      const controller = new AbortController();
      const started: Running = { promise: Promise.resolve(), listeners: new Set(), latest: first, controller };
      const report: PreparingListener = (preparing, line) => {
        started.latest = preparing;
        for (const l of started.listeners) l(preparing, line);
      };
      this.running.set(key, started);
      started.promise = (async () => {
        try {
          await run(report, controller.signal);
        } finally {
          this.running.delete(key);
        }
      })();
      // Settled by whoever waits; an unobserved failure must not crash the service.
      started.promise.catch(() => undefined);
      work = started;
    }
    const current = work;
    current.listeners.add(listener);
    listener(current.latest);
    return { done: current.promise, leave: () => current.listeners.delete(listener) };
  }

  /** Stop every piece of work under way and wait until each has. */
  async close(): Promise<void> {
    const all = [...this.running.values()];
    for (const work of all) work.controller.abort();
    await Promise.allSettled(all.map((w) => w.promise));
  }
}
