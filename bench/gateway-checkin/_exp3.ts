const cfg = JSON.parse(process.argv[2]!);
const tls = { ca: cfg.ca, cert: cfg.cert, key: cfg.key };
let n = 0; const end = performance.now() + 3000;
await Promise.all(Array.from({ length: 32 }, async () => { while (performance.now() < end) { const r = await fetch(cfg.url + "/x", { tls } as RequestInit); await r.arrayBuffer(); n++; } }));
console.log((n / 3).toFixed(0), "req/s");
