// A bulktag client with no bulktag and no Python: docs/TASK_CONTRACT.md §2, from Node with
// celery-node (npm) sending the task. The job rows of §3 live in the results database and
// are written before this runs (the test does it with plain SQL, as any client would);
// this program sends the chunk's message and waits until a worker has begun it (the
// chunk's delivery counter in Redis), so the message is known to have been published.
//
// usage: node celery_node_client.js REDIS_URL JOB PROTOCOL(1|2) FIRST URI...
// Exits 0 once a worker took the chunk, 1 on any error or after 120 s.
"use strict";
const celery = require("celery-node");
const Redis = require("ioredis");

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const [redisUrl, job, protocol, first, ...uris] = process.argv.slice(2);
  const r = new Redis(redisUrl);
  // §2: the message. The backend URL is the workers' Redis, never celery-node's default
  // amqp:// (which would connect to any local RabbitMQ); the result is never awaited.
  const client = celery.createClient(redisUrl, redisUrl, "bulktag");
  client.conf.TASK_PROTOCOL = Number(protocol);
  const items = uris.map((uri, i) => [Number(first) + i, uri]);
  client.sendTask("bulktag.tag_chunk", [job, items, {}], {});
  // A worker that begins a chunk counts its delivery in bulktag:job:<id>:deliveries.
  const deadline = Date.now() + 120000;
  while ((await r.hlen(`bulktag:job:${job}:deliveries`)) < 1) {
    if (Date.now() > deadline) throw new Error(`no worker took job ${job}'s chunk in 120 s`);
    await sleep(100);
  }
  console.log(JSON.stringify({ job, sent: items.length }));
  await client.disconnect();
  r.disconnect();
}

main().catch((err) => {
  console.error(`celery-node client: ${err.stack || err}`);
  process.exit(1);
});
