/** Listener is a function that receives the payload of event E. */
export type Listener<T> = (payload: T) => void;

/**
 * Emitter is a minimal typed event emitter: `on` returns a function that
 * removes the listener. A listener that throws does not stop the others.
 */
export class Emitter<Events extends object> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** on adds listener for event and returns a function that removes it. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  /** off removes listener from event. */
  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    this.listeners.get(event)?.delete(listener as Listener<never>);
  }

  /** once adds a listener that is removed after its first call. */
  once<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    const off = this.on(event, (p) => {
      off();
      listener(p);
    });
    return off;
  }

  protected emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const set = this.listeners.get(event);
    if (!set || set.size === 0) return;
    for (const l of [...set]) {
      try {
        (l as Listener<Events[K]>)(payload);
      } catch (err) {
        reportListenerError(err);
      }
    }
  }
}

/** reportListenerError surfaces a callback's exception without breaking the client. */
export function reportListenerError(err: unknown): void {
  // Rethrown asynchronously: visible in the console / as an uncaught
  // exception, like an exception in a DOM event listener.
  queueMicrotask(() => {
    throw err;
  });
}
