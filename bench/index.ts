/**
 * `npm run bench`: measures our kernel, the peer kernel and raw Effect in this one process and prints a table of
 * rates with the ratios ours/peer (and ours/raw). Compare ratios, not absolute numbers: the machines are shared.
 *
 * Environment: N (default 100000) sets the workload size; ROUNDS (default 3) runs each row that many times,
 * alternating implementations, and keeps each one's best; AGENTOS_PEER points at another peer directory.
 */
import * as core from "./core.ts"
import { loadPeer } from "./peer.ts"

const N = Number(process.env.N ?? 100_000)
const ROUNDS = Number(process.env.ROUNDS ?? 3)
const IDLE = 10_000

interface Spec {
  readonly name: string
  readonly unit: string
  readonly higherIsBetter: boolean
  readonly target: string
  readonly check: (ratio: number, ours: number) => boolean
  readonly run: (impl: typeof core.ours) => Promise<number>
}

const specs: ReadonlyArray<Spec> = [
  { name: "ipc_roundtrip", unit: "round trips/s", higherIsBetter: true, target: "≥ 2× peer", check: (r) => r >= 2, run: (i) => i.ipc(N) },
  { name: "spawn_exit", unit: "spawn+wait/s", higherIsBetter: true, target: "≥ 1.5× peer", check: (r) => r >= 1.5, run: (i) => i.spawnExit(N / 2) },
  { name: "yield_switch", unit: "yields/s", higherIsBetter: true, target: "≥ 1× peer", check: (r) => r >= 1, run: (i) => i.yieldSwitch(N * 2) },
  { name: "fanin_recv", unit: "messages/s", higherIsBetter: true, target: "≥ 1.5× peer", check: (r) => r >= 1.5, run: (i) => i.fanIn(N * 2) },
  { name: "bytes_per_idle_process", unit: "bytes", higherIsBetter: false, target: "≤ 2048 B", check: (_r, ours) => ours <= 2048, run: (i) => i.idleBytes(IDLE) }
]

const main = async () => {
  const peerModule = await loadPeer()
  const peer = peerModule === undefined ? undefined : core.peer(peerModule)
  console.log(`effect-agent-os bench: N=${N}, rounds=${ROUNDS}, node ${process.version}, peer ${peerModule ? peerModule.dir : "absent (no ../shared/peers/agent-os-seed): peer columns are empty"}`)
  if (typeof (globalThis as { gc?: unknown }).gc !== "function") console.log("note: run with --expose-gc for exact memory rows")
  const rows: Array<Array<string>> = [["workload", "unit", "ours", "peer", "raw effect", "ours/peer", "ours/raw", "target", "met"]]
  for (const spec of specs) {
    let ours: number | undefined
    let theirs: number | undefined
    let floor: number | undefined
    const better = (a: number | undefined, b: number) => (a === undefined ? b : spec.higherIsBetter ? Math.max(a, b) : Math.min(a, b))
    for (let round = 0; round < ROUNDS; round++) {
      ours = better(ours, await spec.run(core.ours))
      if (peer !== undefined) theirs = better(theirs, await spec.run(peer as typeof core.ours))
      floor = better(floor, await spec.run(core.raw as typeof core.ours))
    }
    const ratio = (a: number, b: number | undefined) =>
      b === undefined ? undefined : spec.higherIsBetter ? a / b : b / a
    const vsPeer = ratio(ours!, theirs)
    const vsRaw = ratio(ours!, floor)
    const met = spec.name === "bytes_per_idle_process" ? spec.check(0, ours!) : vsPeer === undefined ? undefined : spec.check(vsPeer, ours!)
    rows.push([
      spec.name,
      spec.unit,
      String(ours),
      theirs === undefined ? "absent" : String(theirs),
      floor === undefined ? "-" : String(floor),
      vsPeer === undefined ? "-" : `${vsPeer.toFixed(2)}×`,
      vsRaw === undefined ? "-" : `${vsRaw.toFixed(2)}×`,
      spec.target,
      met === undefined ? "-" : met ? "yes" : "NO"
    ])
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)))
  for (const [i, row] of rows.entries()) {
    console.log("| " + row.map((cell, c) => cell.padEnd(widths[c]!)).join(" | ") + " |")
    if (i === 0) console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|")
  }
  console.log("ratios: higher is better (for bytes, peer/ours). Raw effect uses Effect's default scheduler.")
}

await main()
