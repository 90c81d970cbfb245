/**
 * Flush on process exit. `beforeExit` fires when the event loop has nothing left to do, which a pending
 * linger (an unref'd timer) does not prevent; it is not emitted on `process.exit()` or on a signal, so
 * SIGTERM and SIGINT get handlers of their own. A handler that listens to a signal replaces Node's
 * default of exiting, so once the flush is done it raises the signal again, unless the service has
 * handlers of its own for it: then those own the shutdown.
 */

export interface ExitHooks {
  /** Whether events wait in the buffer. */
  hasWork: () => boolean;
  /** Send what is buffered; the process goes on. */
  flush: () => Promise<unknown>;
  /** Send what is buffered within the shutdown bound, then release everything. */
  shutdown: () => Promise<unknown>;
  signals: readonly NodeJS.Signals[];
}

/** Install the handlers; returns the function that removes them (safe to call twice). */
export function installExitHooks(hooks: ExitHooks): () => void {
  const onBeforeExit = (): void => {
    if (hooks.hasWork()) void hooks.flush();
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    remove(); // a second Ctrl-C gets Node's default: exit at once
    void hooks.shutdown().finally(() => {
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  };
  process.on("beforeExit", onBeforeExit);
  for (const signal of hooks.signals) process.on(signal, onSignal);

  function remove(): void {
    process.off("beforeExit", onBeforeExit);
    for (const signal of hooks.signals) process.off(signal, onSignal);
  }
  return remove;
}
