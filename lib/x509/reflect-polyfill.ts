/**
 * @peculiar/x509 depends on tsyringe, which refuses to load without the
 * Reflect metadata API (normally the `reflect-metadata` package, not a
 * dependency here). This is the few calls tsyringe makes, on a WeakMap.
 * Import it before anything that imports @peculiar/x509.
 *
 * @module
 */
type Meta = Map<unknown, unknown>;
const store = new WeakMap<object, Meta>();
const R = Reflect as unknown as Record<string, unknown>;

if (typeof R.getMetadata !== "function") {
  const own = (target: object, create: boolean): Meta | undefined => {
    let m = store.get(target);
    if (!m && create) store.set(target, (m = new Map()));
    return m;
  };
  R.defineMetadata = (key: unknown, value: unknown, target: object) => void own(target, true)!.set(key, value);
  R.getOwnMetadata = (key: unknown, target: object) => own(target, false)?.get(key);
  R.hasOwnMetadata = (key: unknown, target: object) => own(target, false)?.has(key) ?? false;
  R.getMetadata = (key: unknown, target: object) => {
    for (let t: object | null = target; t; t = Object.getPrototypeOf(t)) {
      const m = store.get(t);
      if (m?.has(key)) return m.get(key);
    }
    return undefined;
  };
  R.hasMetadata = (key: unknown, target: object) => (R.getMetadata as Function)(key, target) !== undefined;
  R.metadata = (key: unknown, value: unknown) => (target: object) => void own(target, true)!.set(key, value);
}

export {};
