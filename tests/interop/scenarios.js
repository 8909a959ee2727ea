#!/usr/bin/env node
// Interop scenarios: drive a STAN server with the real node-nats-streaming
// client and print what the client saw as one JSON object on stdout.
//
//   node scenarios.js SCENARIO URL CLUSTER_ID [ARGS...]
//
// Exit status 0 when the scenario ran to the end (the JSON says what
// happened; asserting on it is the caller's job), 2 on an unexpected client
// error, 3 when a wait ran past its deadline. Every wait has a deadline; no
// scenario sleeps in the hope that something happened. The few fixed delays
// are part of what is being tested (a time-delta start, holding an ack).
//
// The "hold" scenario prints {"connected": true, ...} once connected and then
// stays connected until it is killed; it is meant to be SIGKILLed.
'use strict'

const stan = require('node-nats-streaming')

const WAIT_MS = Number(process.env.SCENARIO_WAIT_MS || 10000)

const [scenario, url, clusterID, ...args] = process.argv.slice(2)
if (!scenario || !url || !clusterID) {
  process.stderr.write('usage: node scenarios.js SCENARIO URL CLUSTER_ID [ARGS...]\n')
  process.exit(64)
}

const uniq = Math.random().toString(36).slice(2, 8)
const live = new Set() // open connections, closed on exit

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function fail (code, err, extra) {
  emit(Object.assign({ scenario, failed: true, error: String((err && err.message) || err) }, extra || {}))
  process.exit(code)
}

class Timeout extends Error {}

// Resolve when pred() is true, checked every few ms, or reject at the deadline.
function until (pred, what, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const start = Date.now()
    const check = () => {
      let ok = false
      try {
        ok = pred()
      } catch (e) {
        reject(e)
        return
      }
      if (ok) {
        resolve()
      } else if (Date.now() - start > ms) {
        reject(new Timeout(`timed out after ${ms} ms waiting for ${what}`))
      } else {
        setTimeout(check, 5)
      }
    }
    check()
  })
}

function once (emitter, okEvent, what, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Timeout(`timed out after ${ms} ms waiting for ${what}`)), ms)
    emitter.once(okEvent, (v) => { clearTimeout(t); resolve(v) })
    emitter.once('error', (e) => { clearTimeout(t); reject(e instanceof Error ? e : new Error(String(e))) })
    emitter.once('timeout', (e) => { clearTimeout(t); reject(e instanceof Error ? e : new Error(String(e))) })
  })
}

function delay (ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

async function connect (clientID, opts = {}) {
  const sc = stan.connect(clusterID, clientID, Object.assign({ url, reconnect: false }, opts))
  await once(sc, 'connect', `connect of ${clientID}`)
  live.add(sc)
  sc.on('close', () => live.delete(sc))
  return sc
}

async function close (sc) {
  if (sc.isClosed()) return
  const p = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Timeout('timed out waiting for close')), WAIT_MS)
    sc.once('close', (err) => { clearTimeout(t); err ? reject(err) : resolve() })
  })
  sc.close()
  await p
  live.delete(sc)
}

function publish (sc, subject, data) {
  return new Promise((resolve, reject) => {
    let returned
    const t = setTimeout(() => reject(new Timeout(`timed out waiting for the ack of ${data}`)), WAIT_MS)
    returned = sc.publish(subject, data, (err, guid) => {
      clearTimeout(t)
      if (err) reject(err instanceof Error ? err : new Error(String(err)))
      else resolve({ returned, acked: guid })
    })
  })
}

async function publishAll (sc, subject, datas) {
  const out = []
  for (const d of datas) out.push(await publish(sc, subject, d))
  return out
}

// Subscribe and collect every delivery. Resolves once the server confirmed.
// onMessage, when given, runs on each delivery right after it is recorded
// (attached before the request goes out: deliveries can share a read with
// the server's reply).
async function subscribe (sc, subject, opts, qGroup, onMessage) {
  const rec = { msgs: [], errors: [] }
  const sub = qGroup ? sc.subscribe(subject, qGroup, opts) : sc.subscribe(subject, opts)
  rec.sub = sub
  sub.on('message', (m) => {
    rec.msgs.push({
      seq: m.getSequence(),
      data: m.getData(),
      redelivered: m.isRedelivered(),
      at: Date.now(),
      ts: m.getTimestamp().getTime(),
      msg: m
    })
    if (onMessage) onMessage(m)
  })
  await once(sub, 'ready', `subscription on ${subject}`)
  sub.on('error', (e) => rec.errors.push(String((e && e.message) || e)))
  return rec
}

function seqs (rec) {
  return rec.msgs.map((m) => m.seq)
}

function hasSeq (rec, seq) {
  return rec.msgs.some((m) => m.seq === seq)
}

async function unsubscribe (rec, doClose) {
  const ev = doClose ? 'closed' : 'unsubscribed'
  const p = once(rec.sub, ev, ev)
  if (doClose) rec.sub.close()
  else rec.sub.unsubscribe()
  await p
}

function range (a, b) {
  const r = []
  for (let i = a; i <= b; i++) r.push(i)
  return r
}

// ---------------------------------------------------------------- scenarios

const scenarios = {
  // N publishes, every ack arrives without error with the GUID publish() returned.
  async publish_acks () {
    const n = Number(args[0] || 50)
    const subject = `pub-${uniq}`
    const sc = await connect(`pub-${uniq}`)
    const pending = []
    for (let i = 0; i < n; i++) pending.push(publish(sc, subject, `msg-${i}`))
    const acks = await Promise.all(pending)
    const rec = await subscribe(sc, subject, sc.subscriptionOptions().setDeliverAllAvailable())
    await until(() => rec.msgs.length >= n, `${n} messages`)
    await close(sc)
    return {
      published: n,
      acks: acks.map((a) => a.acked),
      returned: acks.map((a) => a.returned),
      seqs: seqs(rec),
      data: rec.msgs.map((m) => m.data)
    }
  },

  // One start position (args[0]): publish, subscribe, then publish a
  // marker. Deliveries are in sequence order, so once the marker arrives
  // the list of sequences is complete.
  async start_position () {
    const name = args[0]
    const sc = await connect(`start-${uniq}`)
    const so = () => sc.subscriptionOptions()
    const cases = {
      new_only: [[1, 2, 3], so()],
      last_received: [[1, 2, 3], so().setStartWithLastReceived()],
      sequence: [[1, 2, 3, 4, 5], so().setStartAtSequence(3)],
      deliver_all: [[1, 2, 3], so().setDeliverAllAvailable()],
      first: [[1, 2, 3], so().setStartAt(stan.StartPosition.FIRST)],
      // 1 and 2 published 1.5 s before 3 and 4; start 1 s back.
      time_delta: [[3, 4], so().setStartAtTimeDelta(1000), [1, 2]],
      // the same with an absolute start time taken between the two batches
      start_time: [[3, 4], null, [1, 2]]
    }
    if (!cases[name]) throw new Error(`unknown start position ${name}`)
    let [before, opts, beforeGap] = cases[name]
    const subject = `start-${name}-${uniq}`
    let mid
    if (beforeGap) {
      await publishAll(sc, subject, beforeGap.map((i) => `m${i}`))
      await delay(750) // the time gap a time-based start is measured against
      mid = new Date()
      await delay(750)
    }
    await publishAll(sc, subject, before.map((i) => `m${i}`))
    // setStartTime turns the date into a delta from now: build it last.
    if (!opts) opts = so().setStartTime(mid)
    const rec = await subscribe(sc, subject, opts)
    const markerSeq = before.length + (beforeGap ? beforeGap.length : 0) + 1
    await publish(sc, subject, 'marker')
    await until(() => hasSeq(rec, markerSeq), `marker ${markerSeq}`)
    await unsubscribe(rec, false)
    await close(sc)
    return { seqs: seqs(rec), data: rec.msgs.map((m) => m.data), marker: markerSeq }
  },

  // A durable subscriber reads, its client closes; more is published; the
  // same client ID and durable name come back in a new process.
  async durable_first () {
    const [clientID, durable, subject, count] = [args[0], args[1], args[2], Number(args[3])]
    const sc = await connect(clientID)
    await publishAll(sc, subject, range(1, count).map((i) => `m${i}`))
    const rec = await subscribe(sc, subject, sc.subscriptionOptions()
      .setDurableName(durable).setDeliverAllAvailable())
    await until(() => rec.msgs.length >= count, `${count} messages`)
    await close(sc)
    return { seqs: seqs(rec) }
  },

  async publish () {
    const [clientID, subject, from, to] = [args[0], args[1], Number(args[2]), Number(args[3])]
    const sc = await connect(clientID)
    const acks = await publishAll(sc, subject, range(from, to).map((i) => `m${i}`))
    await close(sc)
    return { acked: acks.length }
  },

  async durable_resume () {
    const [clientID, durable, subject, last] = [args[0], args[1], args[2], Number(args[3])]
    const sc = await connect(clientID)
    // Start position is ignored for an existing durable: ask for all anyway.
    const rec = await subscribe(sc, subject, sc.subscriptionOptions()
      .setDurableName(durable).setDeliverAllAvailable())
    await publish(sc, subject, 'marker')
    await until(() => hasSeq(rec, last + 1), `marker ${last + 1}`)
    await close(sc)
    return { seqs: seqs(rec), data: rec.msgs.map((m) => m.data) }
  },

  // Two members of one queue group on two connections share the messages.
  async queue_group () {
    const n = Number(args[0] || 40)
    const subject = `queue-${uniq}`
    const pub = await connect(`qpub-${uniq}`)
    const members = []
    for (const name of ['a', 'b']) {
      const sc = await connect(`q${name}-${uniq}`)
      members.push(await subscribe(sc, subject, sc.subscriptionOptions(), 'workers'))
    }
    await publishAll(pub, subject, range(1, n).map((i) => `m${i}`))
    const all = () => members.flatMap((m) => seqs(m))
    await until(() => new Set(all()).size >= n, `${n} distinct deliveries`)
    // Markers until both members got one past n: per-member delivery is in
    // order, so nothing from 1..n can still be on its way to either.
    let seq = n
    for (let i = 0; i < 50 && !members.every((m) => seqs(m).some((s) => s > n)); i++) {
      await publish(pub, subject, 'marker')
      seq++
      const s = seq
      await until(() => members.some((m) => hasSeq(m, s)), `marker ${s}`)
    }
    const out = {
      published: n,
      a: seqs(members[0]).filter((s) => s <= n),
      b: seqs(members[1]).filter((s) => s <= n),
      redelivered: members.flatMap((m) => m.msgs.filter((x) => x.redelivered).map((x) => x.seq))
    }
    for (const sc of [...live]) await close(sc)
    return out
  },

  // Manual acks, ackWait 1 s: the unacked message comes back redelivered.
  async redelivery () {
    const subject = `redeliver-${uniq}`
    const sc = await connect(`redeliver-${uniq}`)
    await publishAll(sc, subject, ['one', 'two'])
    const opts = sc.subscriptionOptions().setDeliverAllAvailable()
      .setManualAckMode(true).setAckWait(1000)
    const rec = await subscribe(sc, subject, opts, undefined, (m) => {
      if (m.getSequence() === 1 || m.isRedelivered()) m.ack()
    })
    await until(() => rec.msgs.some((m) => m.seq === 2 && m.redelivered), 'redelivery of 2')
    // Marker after the redelivered ack: seq 1 (acked at once) must not come back.
    await publish(sc, subject, 'marker')
    await until(() => hasSeq(rec, 3), 'marker 3')
    rec.msgs.filter((m) => m.seq === 3).forEach((m) => m.msg.ack())
    const first2 = rec.msgs.find((m) => m.seq === 2 && !m.redelivered)
    const again2 = rec.msgs.find((m) => m.seq === 2 && m.redelivered)
    await close(sc)
    return {
      deliveries: rec.msgs.map((m) => [m.seq, m.redelivered]),
      redelivery_after_ms: again2.at - first2.at
    }
  },

  // MaxInFlight 1: the second message only after the first is acked.
  async max_inflight () {
    const holdMs = Number(args[0] || 500)
    const subject = `inflight-${uniq}`
    const sc = await connect(`inflight-${uniq}`)
    await publishAll(sc, subject, ['a', 'b', 'c'])
    const events = []
    const opts = sc.subscriptionOptions().setDeliverAllAvailable()
      .setManualAckMode(true).setMaxInFlight(1).setAckWait(30000)
    await subscribe(sc, subject, opts, undefined, (m) => {
      events.push(['recv', m.getSequence(), Date.now()])
      setTimeout(() => { // hold the ack: nothing may arrive meanwhile
        events.push(['ack', m.getSequence(), Date.now()])
        m.ack()
      }, holdMs)
    })
    await until(() => events.filter((e) => e[0] === 'ack').length >= 3, '3 acks')
    await close(sc)
    const t0 = events.length ? events[0][2] : 0
    return { events: events.map(([k, s, t]) => [k, s, t - t0]), hold_ms: holdMs }
  },

  // Close keeps a durable's position; unsubscribe drops it.
  async close_vs_unsubscribe () {
    const subject = `cvu-${uniq}`
    const sc = await connect(`cvu-${uniq}`)
    const dur = () => sc.subscriptionOptions().setDurableName('dur').setDeliverAllAvailable()
    await publishAll(sc, subject, ['m1', 'm2', 'm3'])
    const r1 = await subscribe(sc, subject, dur())
    await until(() => r1.msgs.length >= 3, '3 messages')
    await unsubscribe(r1, true) // close
    await publish(sc, subject, 'm4')
    const r2 = await subscribe(sc, subject, dur())
    await publish(sc, subject, 'm5')
    await until(() => hasSeq(r2, 5), 'seq 5 after close')
    await unsubscribe(r2, false) // unsubscribe
    const r3 = await subscribe(sc, subject, dur())
    await publish(sc, subject, 'm6')
    await until(() => hasSeq(r3, 6), 'seq 6 after unsubscribe')
    await unsubscribe(r3, false)
    await close(sc)
    return { first: seqs(r1), after_close: seqs(r2), after_unsubscribe: seqs(r3) }
  },

  // Connect with the given client ID; report success or the server's error.
  async connect () {
    const clientID = args[0]
    const t0 = Date.now()
    try {
      const sc = await connect(clientID, { connectTimeout: Number(args[1] || 5000) })
      const ms = Date.now() - t0
      await close(sc)
      return { connected: true, ms }
    } catch (e) {
      if (e instanceof Timeout) throw e
      return { connected: false, error: String((e && e.message) || e), ms: Date.now() - t0 }
    }
  },

  // Connect and stay connected until killed.
  async hold () {
    const sc = await connect(args[0])
    emit({ scenario, connected: true, pid: process.pid })
    sc.on('close', () => process.exit(0))
    await new Promise(() => {})
  }
}

async function main () {
  const fn = scenarios[scenario]
  if (!fn) fail(64, `unknown scenario ${scenario}; known: ${Object.keys(scenarios).join(', ')}`)
  let result
  try {
    result = await fn()
  } catch (e) {
    fail(e instanceof Timeout ? 3 : 2, e)
  }
  emit(Object.assign({ scenario }, result))
  process.exit(0)
}

main()
