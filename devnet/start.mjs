// Local ATProto test network: an in-memory PLC directory and a real PDS, both bound to loopback.
//
// Prints exactly one JSON line to stdout once both servers listen:
//   {"plc": "http://127.0.0.1:P", "pds": "http://127.0.0.1:Q", "pdsDid": "did:web:localhost",
//    "handleDomain": ".test", "dataDir": "/tmp/..."}
// Everything else (logs, errors) goes to stderr. Exits on SIGTERM/SIGINT and when stdin closes,
// so a parent that dies never leaves this process behind.
//
// Environment (all optional):
//   ATCR_DEVNET_HOST            bind address, default 127.0.0.1 (loopback only)
//   ATCR_DEVNET_PLC_PORT        PLC port, default a free port
//   ATCR_DEVNET_PDS_PORT        PDS port, default a free port
//   ATCR_DEVNET_DATA_DIR        PDS data directory (kept); default a temp dir removed on exit
//   ATCR_DEVNET_PLC_ROTATION_KEY_HEX  the PDS's PLC rotation key (secp256k1, 64 hex); lets the
//                               caller sign PLC operations for accounts of this PDS (key rotation)
//   ATCR_DEVNET_ADMIN_PASSWORD  PDS admin password, default "admin-pass"
//   ATCR_DEVNET_KEEP_STDIN=1    do not exit when stdin closes (e.g. `node start.mjs </dev/null &`)
//   ATCR_DEVNET_LOG=1           enable the servers' own (pino) logs, written to stderr

import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

const HANDLE_DOMAIN = '.test'

// Logs must never reach stdout: the parent parses it. Configure before the servers are imported,
// because their loggers read the environment at import time.
process.env.LOG_ENABLED = process.env.ATCR_DEVNET_LOG === '1' ? 'true' : 'false'
process.env.LOG_DESTINATION = '/dev/stderr'
console.log = console.error
console.info = console.error

const log = (msg) => process.stderr.write(`[devnet] ${msg}\n`)

const host = process.env.ATCR_DEVNET_HOST || '127.0.0.1'
const portFromEnv = (name) => {
  const raw = process.env[name]
  if (!raw) return 0
  const port = Number.parseInt(raw, 10)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad ${name}: ${raw}`)
  return port
}

// A free port on the bind address. The PDS must know its own URL before it listens.
const freePort = async () => {
  const srv = net.createServer()
  srv.listen(0, host)
  await once(srv, 'listening')
  const { port } = srv.address()
  srv.close()
  await once(srv, 'close')
  return port
}

const listen = async (app, port) => {
  // app.listen (not http.createServer) keeps xrpc-server's websocket upgrade hook.
  const server = app.listen(port, host)
  await once(server, 'listening')
  return server
}

const closeServer = async (server) => {
  if (!server?.listening) return
  const closed = once(server, 'close')
  server.close()
  server.closeAllConnections?.()
  await closed
}

const main = async () => {
  const { default: plcMod } = await import('@did-plc/server')
  const pdsMod = await import('@atproto/pds')
  const { PDS, envToCfg, envToSecrets } = pdsMod.default ?? pdsMod

  const ownDataDir = !process.env.ATCR_DEVNET_DATA_DIR
  const dataDir =
    process.env.ATCR_DEVNET_DATA_DIR ||
    (await mkdtemp(path.join(os.tmpdir(), 'atcr-devnet-pds-')))

  let plcServer
  let pds
  let pdsServer
  let stopping = false

  const stop = async (code) => {
    if (stopping) return
    stopping = true
    try {
      await closeServer(pdsServer)
      if (pds) await pds.destroy().catch((err) => log(`pds destroy: ${err}`))
      await closeServer(plcServer)
      if (ownDataDir) await rm(dataDir, { recursive: true, force: true })
    } catch (err) {
      log(`shutdown error: ${err?.stack ?? err}`)
      code = code || 1
    }
    process.exit(code)
  }
  process.on('SIGTERM', () => void stop(0))
  process.on('SIGINT', () => void stop(0))
  if (process.env.ATCR_DEVNET_KEEP_STDIN !== '1') {
    process.stdin.on('end', () => void stop(0))
    process.stdin.on('error', () => void stop(0))
    process.stdin.resume()
  }

  try {
    // PLC: in-memory database, nothing on disk.
    const plc = plcMod.PlcServer.create({ db: plcMod.Database.mock(), port: 0 })
    plcServer = await listen(plc.app, portFromEnv('ATCR_DEVNET_PLC_PORT'))
    const plcUrl = `http://${host}:${plcServer.address().port}`

    const pdsPort = portFromEnv('ATCR_DEVNET_PDS_PORT') || (await freePort())
    const pdsUrl = `http://${host}:${pdsPort}`
    const env = {
      port: pdsPort,
      hostname: 'localhost', // dev-mode naming: service DID did:web:localhost
      devMode: true,
      version: '0.0.0-devnet',
      dataDirectory: dataDir,
      blobstoreDiskLocation: path.join(dataDir, 'blobs'),
      didPlcUrl: plcUrl,
      serviceHandleDomains: [HANDLE_DOMAIN],
      inviteRequired: false,
      rateLimitsEnabled: false,
      crawlers: [],
      jwtSecret: randomBytes(16).toString('hex'),
      adminPassword: process.env.ATCR_DEVNET_ADMIN_PASSWORD || 'admin-pass',
      plcRotationKeyK256PrivateKeyHex:
        process.env.ATCR_DEVNET_PLC_ROTATION_KEY_HEX || randomBytes(32).toString('hex'),
    }
    const cfg = envToCfg(env)
    // Advertise the loopback address we actually bind (DID documents name this endpoint).
    cfg.service.publicUrl = pdsUrl
    pds = await PDS.create(cfg, envToSecrets(env))
    await pds.ctx.sequencer.start()
    pdsServer = await listen(pds.app, pdsPort)
    pdsServer.keepAliveTimeout = 90000

    const ready = {
      plc: plcUrl,
      pds: pdsUrl,
      pdsDid: cfg.service.did,
      handleDomain: HANDLE_DOMAIN,
      dataDir,
    }
    process.stdout.write(`${JSON.stringify(ready)}\n`)
    log(`ready: PLC ${plcUrl}, PDS ${pdsUrl}`)
  } catch (err) {
    log(`startup failed: ${err?.stack ?? err}`)
    await stop(1)
  }
}

main().catch((err) => {
  log(`fatal: ${err?.stack ?? err}`)
  process.exit(1)
})
