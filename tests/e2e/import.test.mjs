// import.test.mjs - moving up from one machine (DESIGN §7b): a SQLite proxy
// with tenants (an agency and its subaccount), proxy keys (one revoked),
// connections, BYOK settings and balances moved by real charges is stopped,
// then `byok-proxy --config REDIS_CONFIG --import-sqlite PATH` copies it into
// a redis-server started by the test - twice: the second run changes nothing
// (nothing doubled). A Redis that moved on since (a balance charged there)
// makes the import refuse as a whole, listing the difference.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startMockOpenAI } from './lib/mock_openai.mjs';
import { startProxy, runBinary, balances } from './lib/proxy.mjs';
import { startRedis, dumpRedis } from './lib/redis.mjs';
import { httpRequest, randomHex } from './lib/util.mjs';

const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

test('--import-sqlite copies a SQLite store into Redis; a second run changes nothing; a diverged Redis is refused',
  { timeout: 90000 }, async () => {
    const mock = await startMockOpenAI();
    cleanup.push(() => mock.close());
    const redis = await startRedis();
    cleanup.push(async () => { await redis.stop(); redis.remove(); });
    const p = await startProxy({ mockUrl: mock.url });
    cleanup.push(async () => { if (!p.exit) await p.stop(); p.remove(); });
    const a = p.admin;

    // The SQLite side, through the admin API.
    const sfx = randomHex(3);
    const agency = `ag_${sfx}`, sub = `sub_${sfx}`, solo = `solo_${sfx}`;
    await a.createTenant({ id: agency, name: 'Agency', features: { byok: true, agency: true },
      plan_credits_micros: 300, wallet_micros: 2_000_000 });
    await a.createTenant({ id: sub, name: 'Sub', parent_id: agency, wallet_micros: 0 });
    await a.createTenant({ id: solo, name: 'Solo', features: { byok: true }, plan_credits_micros: 5,
      wallet_micros: 1_000_000 });
    const kAgency = await a.createKey(agency, 'agency');
    const kSub = await a.createKey(sub, 'sub bot');
    const kOld = await a.createKey(solo, 'old');
    await a.revokeKey(solo, kOld.id);
    const cOpenai = await a.createConnection(agency, { provider: 'openai', name: 'agency openai',
      api_key: `sk-agency-${randomHex(8)}` });
    const cAzure = await a.createConnection(solo, { provider: 'azure_speech', name: 'solo azure',
      api_key: randomHex(16), region: 'westeurope' });
    await a.putByok(agency, { enabled: true, slots: { openai: cOpenai.id } });
    await a.putByok(solo, { enabled: false, slots: { azure_speech: cAzure.id } });

    // Real charges move Solo's balances first (its toggle is off: wallet
    // lines on the platform key), so what is imported is not what was
    // created.
    const kSolo = await a.createKey(solo, 'live');
    for (let i = 0; i < 3; i++) {
      const r = await httpRequest(`${p.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${kSolo.key}` },
        body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `import ${i}` }] },
      });
      assert.equal(r.status, 200, r.text);
    }
    await a.waitRecords(solo, 3);
    const before = {};
    for (const t of [agency, sub, solo]) before[t] = balances(await a.getTenant(t));
    assert.ok(before[solo].wallet < 1_000_000 || before[solo].plan < 5, 'the chats charged Solo');
    assert.equal(await p.stop(), 0);

    // A fleet config: the same file with a Redis store.
    const cfg = JSON.parse(fs.readFileSync(p.configPath, 'utf8'));
    const dbPath = cfg.store.path;
    cfg.store = { backend: 'redis', url: redis.url(0) };
    const redisCfg = path.join(p.dir, 'fleet.json');
    fs.writeFileSync(redisCfg, JSON.stringify(cfg, null, 2));
    const env = { OPENAI_API_KEY: p.platformKey };
    const run = () => runBinary(['--config', redisCfg, '--import-sqlite', dbPath], { env, timeout: 30000 });

    const first = await run();
    assert.equal(first.code, 0, `first import: ${first.stdout}${first.stderr}`);
    assert.match(first.stdout, /tenants\s+3 new, 0 already there/);
    assert.match(first.stdout, /proxy keys\s+4 new, 0 already there/);
    assert.match(first.stdout, /connections\s+2 new, 0 already there/);
    assert.match(first.stdout, /BYOK settings\s+2 new, 0 already there/);
    assert.match(first.stdout, /secrets\s+1 new, 0 already there/);
    const state1 = await dumpRedis(redis);

    // What Redis holds is what SQLite held: balances set, not added.
    for (const t of [agency, sub, solo]) {
      const h = state1[`byok:{t:${t}}:tenant`];
      assert.ok(h, `tenant ${t} in Redis`);
      assert.equal(Number(h.value.plan), before[t].plan, `${t} plan credits`);
      assert.equal(Number(h.value.wallet), before[t].wallet, `${t} wallet`);
    }
    assert.equal(state1[`byok:{t:${sub}}:tenant`].value.parent, agency);
    assert.deepEqual(state1[`byok:{t:${agency}}:subs`].value, [sub]);
    assert.deepEqual(state1['byok:tenants'].value, [agency, solo, sub].sort());
    for (const [k, t] of [[kAgency, agency], [kSub, sub], [kOld, solo], [kSolo, solo]]) {
      assert.equal(state1[`byok:key:${k.id}`].value, t, `key ${k.id} indexed to its tenant`);
      const kh = state1[`byok:{t:${t}}:key:${k.id}`].value;
      assert.match(kh.hash, /^hex:[0-9a-f]{64}$/, 'only the key hash is stored');
      assert.ok(!JSON.stringify(state1).includes(k.key), 'no proxy key in Redis');
    }
    assert.notEqual(state1[`byok:{t:${solo}}:key:${kOld.id}`].value.revoked, '0', 'revocation kept');
    assert.equal(state1[`byok:{t:${solo}}:key:${kSolo.id}`].value.revoked, '0');
    assert.equal(state1[`byok:{t:${agency}}:conn:${cOpenai.id}`].value.provider, 'openai');
    assert.equal(state1[`byok:{t:${solo}}:conn:${cAzure.id}`].value.region, 'westeurope');
    assert.match(state1[`byok:{t:${agency}}:conn:${cOpenai.id}`].value.sealed, /^hex:/, 'still sealed');
    assert.equal(state1[`byok:{t:${agency}}:byok`].value.enabled, '1');
    assert.equal(state1[`byok:{t:${agency}}:byok`].value['slot:openai'], cOpenai.id);
    assert.equal(state1[`byok:{t:${solo}}:byok`].value['slot:azure_speech'], cAzure.id);
    assert.ok(state1['byok:secret:proxy_key_hash'], 'the proxy-key hashing key');
    // Usage history stays in SQLite.
    assert.equal(Object.keys(state1).filter((k) => k.startsWith('byok:rec:') || k.startsWith('byok:usage')).length, 0);

    // Twice: nothing new, nothing doubled, not one byte changed.
    const second = await run();
    assert.equal(second.code, 0, `second import: ${second.stdout}${second.stderr}`);
    assert.match(second.stdout, /tenants\s+0 new, 3 already there/);
    assert.match(second.stdout, /proxy keys\s+0 new, 4 already there/);
    assert.deepEqual(await dumpRedis(redis), state1);

    // The fleet charged the agency since: the import refuses as a whole.
    await redis.command('HINCRBY', `byok:{t:${agency}}:tenant`, 'wallet', -250);
    const state2 = await dumpRedis(redis);
    const third = await run();
    assert.equal(third.code, 1, third.stdout);
    assert.match(third.stdout, new RegExp(`tenant ${agency}: wallet_micros \\(SQLite ${before[agency].wallet}, Redis ${before[agency].wallet - 250}\\)`));
    assert.match(third.stdout, /nothing imported/);
    assert.deepEqual(await dumpRedis(redis), state2);

    // Not a fleet config, or no such file: refused, nothing created.
    const wrong = await runBinary(['--config', p.configPath, '--import-sqlite', dbPath], { env });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stdout, /store\.backend must be "redis"/);
    const missing = path.join(p.dir, 'nope.db');
    const none = await runBinary(['--config', redisCfg, '--import-sqlite', missing], { env });
    assert.equal(none.code, 1);
    assert.ok(!fs.existsSync(missing));
  });
