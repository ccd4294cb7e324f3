// A bulktag client with no bulktag and no Python: docs/TASK_CONTRACT.md §2-§4, from Node
// with celery-node (npm) sending the task and ioredis (its dependency) writing the job keys.
//
// usage: node celery_node_client.js REDIS_URL JOB PROTOCOL(1|2) URI...
// Exits 0 once the job is done (prints its hash as JSON), 1 on any error or after 120 s.
"use strict";
const celery = require("celery-node");
const Redis = require("ioredis");

// §3.3, end of enumeration: the same script bulktag's producer runs.
const FINISH_ENUMERATION = `
if redis.call('HGET', KEYS[1], 'state') ~= 'enumerating' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'running')
local h = redis.call('HMGET', KEYS[1], 'total', 'ok', 'error')
if tonumber(h[2]) + tonumber(h[3]) >= tonumber(h[1]) then
  redis.call('HSET', KEYS[1], 'state', 'done', 'finished_at', ARGV[1])
  redis.call('PUBLISH', KEYS[1] .. ':finished', 'done')
end
return 1`;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const [redisUrl, job, protocol, ...uris] = process.argv.slice(2);
  const key = `bulktag:job:${job}`;
  const r = new Redis(redisUrl);
  // §3.1: create the job hash, refusing an existing id
  if ((await r.hsetnx(key, "job", job)) !== 1) throw new Error(`job ${job} exists`);
  const now = Date.now() / 1000;
  await r
    .multi()
    .hset(key, {
      job, state: "enumerating", total: 0, ok: 0, error: 0, deduped: 0, chunks: 0,
      chunk_size: uris.length, created_at: now, source: "celery-node contract client",
    })
    .zadd("bulktag:jobs", now, job)
    .exec();
  // §3.2: count the chunk and list its URIs before its message exists
  await r
    .multi()
    .rpush(`${key}:uris`, ...uris)
    .hincrby(key, "total", uris.length)
    .hincrby(key, "chunks", 1)
    .exec();
  // §2: the message. The backend URL is the workers' Redis, never celery-node's default
  // amqp:// (which would connect to any local RabbitMQ); the result is never awaited.
  const client = celery.createClient(redisUrl, redisUrl, "bulktag");
  client.conf.TASK_PROTOCOL = Number(protocol);
  client.sendTask("bulktag.tag_chunk", [job, uris.map((uri, i) => [i, uri]), {}], {});
  await r.eval(FINISH_ENUMERATION, 1, key, now);
  // §4: the job is done when ok + error == total; read its hash
  const deadline = Date.now() + 120000;
  while ((await r.hget(key, "state")) !== "done") {
    if (Date.now() > deadline) throw new Error(`job ${job} not done after 120 s`);
    await sleep(100);
  }
  console.log(JSON.stringify(await r.hgetall(key)));
  await client.disconnect();
  r.disconnect();
}

main().catch((err) => {
  console.error(`celery-node client: ${err.stack || err}`);
  process.exit(1);
});
