// tls.mjs - a throwaway test CA and a server certificate for 127.0.0.1 /
// localhost, made at test time with the openssl CLI in a temp dir. Used for
// the TLS mocks (OpenAI Realtime and Cartesia WebSockets: their SDKs force
// wss) and for the proxy's TLS listener. Node clients trust it with the `ca`
// option (in-process) or NODE_EXTRA_CA_CERTS=caFile (child processes; read
// only at process start); the proxy with upstream_ca_file=caFile.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

let cached = null;

// Returns { dir, caFile, caKeyFile, certFile, keyFile, ca, cert, key, remove() }
// (PEM strings for ca/cert/key). One CA per process unless fresh is true; the
// files live until remove() or process exit.
export function makeTestCerts({ fresh = false, names = ['localhost'], ips = ['127.0.0.1', '::1'] } = {}) {
  if (cached && !fresh) return cached;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'byok-tls-'));
  const f = (n) => path.join(dir, n);
  const run = (args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const ecKey = (out) => run(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', out]);

  ecKey(f('ca.key'));
  run(['req', '-x509', '-new', '-key', f('ca.key'), '-sha256', '-days', '2', '-subj', '/CN=byok-proxy e2e test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-out', f('ca.pem')]);
  ecKey(f('server.key'));
  run(['req', '-new', '-key', f('server.key'), '-subj', '/CN=localhost', '-out', f('server.csr')]);
  const san = [...names.map((d) => `DNS:${d}`), ...ips.map((i) => `IP:${i}`)].join(',');
  fs.writeFileSync(f('server.ext'), [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    `subjectAltName=${san}`,
    '',
  ].join('\n'));
  run(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-days', '2', '-sha256', '-extfile', f('server.ext'), '-out', f('server.pem')]);

  const certs = {
    dir,
    caFile: f('ca.pem'),
    caKeyFile: f('ca.key'),
    certFile: f('server.pem'),
    keyFile: f('server.key'),
    ca: fs.readFileSync(f('ca.pem'), 'utf8'),
    cert: fs.readFileSync(f('server.pem'), 'utf8'),
    key: fs.readFileSync(f('server.key'), 'utf8'),
    remove() {
      fs.rmSync(dir, { recursive: true, force: true });
      if (cached === certs) cached = null;
    },
  };
  process.once('exit', () => { try { fs.rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ } });
  if (!fresh) cached = certs;
  return certs;
}
