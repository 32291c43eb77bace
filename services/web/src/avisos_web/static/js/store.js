// store.js: what the app keeps in IndexedDB for offline use.
//   notifications: the last notifications seen (keyPath id, index seq), at most KEEP
//   outbox: mark-read / acknowledge actions made offline, with their idempotency key
//   meta: small values (user, unread count)

const DB_NAME = "avisos";
const DB_VERSION = 1;
export const KEEP = 200;

let dbPromise = null;

function open() {
  if (!dbPromise) {
    dbPromise = new Promise((resolve, reject) => {
      const req = indexedDB.open(DB_NAME, DB_VERSION);
      req.onupgradeneeded = () => {
        const db = req.result;
        const notes = db.createObjectStore("notifications", { keyPath: "id" });
        notes.createIndex("seq", "seq");
        db.createObjectStore("outbox", { keyPath: "key" }).createIndex("at", "at");
        db.createObjectStore("meta");
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }
  return dbPromise;
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

function result(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** Save (insert or replace) notifications, newest version wins; trim to KEEP. */
export async function putNotifications(items) {
  if (!items.length) return;
  const db = await open();
  const tx = db.transaction("notifications", "readwrite");
  const store = tx.objectStore("notifications");
  for (const n of items) {
    const old = await result(store.get(n.id));
    // _local: the server's copy replacing an optimistic local change of the same seq.
    const { _local: force, ...clean } = n;
    if (!old || (old.seq ?? 0) <= (clean.seq ?? 0) || force) store.put({ ...old, ...clean });
  }
  await done(tx);
  await trim();
}

async function trim() {
  const db = await open();
  const tx = db.transaction("notifications", "readwrite");
  const store = tx.objectStore("notifications");
  const count = await result(store.count());
  let extra = count - KEEP;
  if (extra > 0) {
    const cursorReq = store.index("seq").openCursor();
    cursorReq.onsuccess = () => {
      const c = cursorReq.result;
      if (c && extra > 0) {
        c.delete();
        extra -= 1;
        c.continue();
      }
    };
  }
  await done(tx);
}

/** Apply a change to stored notifications (e.g. read_at) without a server round trip. */
export async function patchNotifications(ids, patch) {
  const db = await open();
  const tx = db.transaction("notifications", "readwrite");
  const store = tx.objectStore("notifications");
  for (const id of ids) {
    const n = await result(store.get(id));
    if (n) store.put({ ...n, ...patch });
  }
  await done(tx);
}

export async function patchAll(fn) {
  const db = await open();
  const tx = db.transaction("notifications", "readwrite");
  const store = tx.objectStore("notifications");
  const all = await result(store.getAll());
  for (const n of all) {
    const next = fn(n);
    if (next) store.put(next);
  }
  await done(tx);
}

/** Stored notifications, newest first (by seq). */
export async function getNotifications(limit = KEEP) {
  const db = await open();
  const all = await result(db.transaction("notifications").objectStore("notifications").getAll());
  all.sort((a, b) => (b.seq ?? 0) - (a.seq ?? 0));
  return all.slice(0, limit);
}

export async function queueAction(action) {
  const db = await open();
  const tx = db.transaction("outbox", "readwrite");
  tx.objectStore("outbox").put({ at: Date.now(), ...action });
  await done(tx);
}

export async function listOutbox() {
  const db = await open();
  const all = await result(db.transaction("outbox").objectStore("outbox").getAll());
  return all.sort((a, b) => a.at - b.at);
}

export async function removeOutbox(key) {
  const db = await open();
  const tx = db.transaction("outbox", "readwrite");
  tx.objectStore("outbox").delete(key);
  await done(tx);
}

export async function setMeta(key, value) {
  const db = await open();
  const tx = db.transaction("meta", "readwrite");
  tx.objectStore("meta").put(value, key);
  await done(tx);
}

export async function getMeta(key) {
  const db = await open();
  return result(db.transaction("meta").objectStore("meta").get(key));
}

/** Forget everything (logout: nothing of this user stays on a shared device). */
export async function clearAll() {
  const db = await open();
  const tx = db.transaction(["notifications", "outbox", "meta"], "readwrite");
  for (const name of ["notifications", "outbox", "meta"]) tx.objectStore(name).clear();
  await done(tx);
}
