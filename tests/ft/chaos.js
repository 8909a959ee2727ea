#!/usr/bin/env node
// Clients for the FT chaos test (test_chaos.py), on the real
// node-nats-streaming client installed in ../interop/node_modules.
//
//   node chaos.js publisher URL CLUSTER_ID SUBJECT PUB_ID RATE MAX_INFLIGHT ACK_WAIT_MS
//   node chaos.js durable   URL CLUSTER_ID SUBJECT CLIENT_ID DURABLE ACK_WAIT_MS
//   node chaos.js resume    URL CLUSTER_ID SUBJECT CLIENT_ID DURABLE ACK_WAIT_MS LAST_ACKED LAST_SEQ
//
// publisher: publishes "PUB_ID-<counter>" (counter from 1) RATE times a second,
// at most MAX_INFLIGHT unacknowledged at a time. Every message is published
// exactly once: a publish whose ack does not come within ACK_WAIT_MS is
// recorded as failed and never retried. Runs until a line arrives on stdin
// (or stdin closes), then waits for every outstanding ack or ack timeout.
//
// durable: a durable subscription from the first message, manual acks, acks
// everything it receives. Runs until a line arrives on stdin.
//
// resume: the same client ID and durable again; acks everything, and stops
// once it has received every sequence in (LAST_ACKED, LAST_SEQ].
//
// While running, publisher and durable print {"progress": ...} lines every
// 100 ms; the final line is the result object. Exit status 0 when the run
// went to the end, 2 on an unexpected client error, 3 on a deadline.
'use strict'

const path = require('path')
const stan = require(path.join(__dirname, '..', 'interop', 'node_modules', 'node-nats-streaming'))

const WAIT_MS = 15000

const [mode, url, clusterID, subject, ...args] = process.argv.slice(2)

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

class Timeout extends Error {}

// The last line can be large: exit only once it is written (stdout to a
// pipe is asynchronous in node, process.exit would cut it).
function finish (code, obj) {
  process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(code))
}

function fail (code, err) {
  finish(code, { mode, client_failed: true, error: String((err && err.message) || err) })
}

function connect (clientID, ackTimeout = 3000) {
  return new Promise((resolve, reject) => {
    const sc = stan.connect(clusterID, clientID, {
      url,
      reconnect: false,
      ackTimeout,
      connectTimeout: 5000
    })
    const t = setTimeout(() => reject(new Timeout(`connect of ${clientID}`)), WAIT_MS)
    sc.once('connect', () => { clearTimeout(t); resolve(sc) })
    sc.once('error', (e) => { clearTimeout(t); reject(e) })
  })
}

function close (sc) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Timeout('close')), WAIT_MS)
    sc.once('close', (err) => { clearTimeout(t); err ? reject(err) : resolve() })
    sc.close()
  })
}

// Resolves on the first line on stdin, or when stdin closes.
function stdinStop () {
  return new Promise((resolve) => {
    process.stdin.on('data', (d) => { if (String(d).includes('\n')) resolve() })
    process.stdin.on('end', resolve)
    process.stdin.on('close', resolve)
  })
}

function until (pred, what, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const start = Date.now()
    const check = () => {
      if (pred()) resolve()
      else if (Date.now() - start > ms) reject(new Timeout(`timed out after ${ms} ms waiting for ${what}`))
      else setTimeout(check, 5)
    }
    check()
  })
}

async function publisher () {
  const [pubID, rate, maxInflight] = [args[0], Number(args[1]), Number(args[2])]
  const sc = await connect(`chaos-pub-${pubID}`, Number(args[3]))
  const acked = []
  const failed = []
  const errors = {}
  let sent = 0
  let inflight = 0
  let stopping = false
  let connClosed = null
  sc.on('close', (e) => { connClosed = String(e || 'closed') })
  sc.on('error', (e) => { errors[String(e)] = (errors[String(e)] || 0) + 1 })

  const publishOne = () => {
    const n = ++sent
    inflight++
    sc.publish(subject, `${pubID}-${n}`, (err) => {
      inflight--
      if (err) {
        failed.push(n)
        const k = String((err && err.message) || err)
        errors[k] = (errors[k] || 0) + 1
      } else {
        acked.push(n)
      }
    })
  }
  // Pace: every tick publish as many as the rate allows so far.
  const t0 = Date.now()
  const tick = () => {
    if (stopping || connClosed) return
    const due = Math.floor((Date.now() - t0) * rate / 1000)
    while (sent < due && inflight < maxInflight) publishOne()
    setTimeout(tick, 2)
  }
  tick()
  const progress = setInterval(() => emit({ progress: acked.length, sent, unacked: failed.length }), 100)
  await stdinStop()
  stopping = true
  await until(() => inflight === 0, 'outstanding acks', Number(args[3]) + WAIT_MS)
  clearInterval(progress)
  if (!connClosed) await close(sc)
  return { pub: pubID, sent, acked, unacked: failed, errors, conn_closed: connClosed }
}

async function durableSub (resume) {
  const [clientID, durable, ackWait] = [args[0], args[1], Number(args[2])]
  const sc = await connect(clientID)
  const msgs = [] // [seq, redelivered, data]
  const errors = []
  let lastAcked = 0
  let connClosed = null
  sc.on('close', (e) => { connClosed = String(e || 'closed') })
  sc.on('error', (e) => errors.push(String(e)))
  const opts = sc.subscriptionOptions().setDurableName(durable).setDeliverAllAvailable()
    .setManualAckMode(true).setAckWait(ackWait).setMaxInFlight(4096)
  const sub = sc.subscribe(subject, opts)
  sub.on('message', (m) => {
    const seq = m.getSequence()
    msgs.push([seq, m.isRedelivered(), m.getData()])
    m.ack()
    if (seq > lastAcked) lastAcked = seq
  })
  sub.on('error', (e) => errors.push(String(e)))
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Timeout('subscription ready')), WAIT_MS)
    sub.once('ready', () => { clearTimeout(t); resolve() })
    sub.once('error', (e) => { clearTimeout(t); reject(e) })
  })
  if (resume) {
    const [from, to] = [Number(args[3]), Number(args[4])]
    const seen = new Set()
    sub.on('message', (m) => seen.add(m.getSequence()))
    for (const [s] of msgs) seen.add(s)
    await until(() => { for (let s = from + 1; s <= to; s++) if (!seen.has(s)) return false; return true },
      `sequences ${from + 1}..${to}`)
  } else {
    const progress = setInterval(() => emit({ progress: msgs.length, last_acked: lastAcked }), 100)
    await stdinStop()
    clearInterval(progress)
  }
  if (!connClosed) await close(sc)
  return { durable, msgs, last_acked: lastAcked, errors, conn_closed: connClosed }
}

async function main () {
  const modes = {
    publisher,
    durable: () => durableSub(false),
    resume: () => durableSub(true)
  }
  if (!modes[mode] || !url || !clusterID || !subject) {
    fail(64, `usage: see the head of ${__filename}`)
    return
  }
  let result
  try {
    result = await modes[mode]()
  } catch (e) {
    fail(e instanceof Timeout ? 3 : 2, e)
    return
  }
  finish(0, Object.assign({ mode }, result))
}

main()
