/**
 * `npm run bench`: measures our kernel, the peer kernel and raw Effect in this one process and prints a table with
 * the ratios ours/peer (and ours/raw). Compare ratios, not absolute numbers: the machines are shared.
 *
 * Environment: N (default 100000) sets the workload size; ROUNDS (default 3) runs each row that many times,
 * alternating implementations, and keeps each one's best; AGENTOS_PEER points at another peer directory.
 */
import * as agents from "./agents.ts"
import * as core from "./core.ts"
import * as devices from "./devices.ts"
import * as llm from "./llm.ts"
import * as memory from "./memory.ts"
import { loadPeer } from "./peer.ts"

const N = Number(process.env.N ?? 100_000)
const ROUNDS = Number(process.env.ROUNDS ?? 3)
const IDLE = 10_000

type PeerCore = ReturnType<typeof core.peer>
type PeerDevices = ReturnType<typeof devices.peer>
type PeerMemory = ReturnType<typeof memory.peer>

interface Spec {
  readonly name: string
  readonly unit: string
  readonly higherIsBetter: boolean
  readonly target: string
  /** Whether the target is met, from our figure and the ratio to the peer (when there is one). */
  readonly met: (ours: number, ratio: number | undefined) => boolean | undefined
  readonly ours: () => Promise<number>
  readonly peer?: (peer: {
    readonly core: PeerCore
    readonly devices: PeerDevices
    readonly memory: PeerMemory
  }) => Promise<number>
  readonly raw?: () => Promise<number>
}

const atLeast = (x: number) => (_ours: number, ratio: number | undefined) =>
  ratio === undefined ? undefined : ratio >= x

const specs: ReadonlyArray<Spec> = [
  {
    name: "ipc_roundtrip",
    unit: "round trips/s",
    higherIsBetter: true,
    target: "≥ 2× peer",
    met: atLeast(2),
    ours: () => core.ours.ipc(N),
    peer: (p) => p.core.ipc(N),
    raw: () => core.raw.ipc(N)
  },
  {
    name: "spawn_exit",
    unit: "spawn+wait/s",
    higherIsBetter: true,
    target: "≥ 1.5× peer",
    met: atLeast(1.5),
    ours: () => core.ours.spawnExit(N / 2),
    peer: (p) => p.core.spawnExit(N / 2),
    raw: () => core.raw.spawnExit(N / 2)
  },
  {
    name: "yield_switch",
    unit: "yields/s",
    higherIsBetter: true,
    target: "≥ 1× peer",
    met: atLeast(1),
    ours: () => core.ours.yieldSwitch(N * 2),
    peer: (p) => p.core.yieldSwitch(N * 2),
    raw: () => core.raw.yieldSwitch(N * 2)
  },
  {
    name: "fanin_recv",
    unit: "messages/s",
    higherIsBetter: true,
    target: "≥ 1.5× peer",
    met: atLeast(1.5),
    ours: () => core.ours.fanIn(N * 2),
    peer: (p) => p.core.fanIn(N * 2),
    raw: () => core.raw.fanIn(N * 2)
  },
  {
    name: "bytes_per_idle_process",
    unit: "bytes",
    higherIsBetter: false,
    target: "≤ 2048 B",
    met: (ours) => ours <= 2048,
    ours: () => core.ours.idleBytes(IDLE),
    peer: (p) => p.core.idleBytes(IDLE),
    raw: () => core.raw.idleBytes(IDLE)
  },
  {
    name: "driver_read",
    unit: "reads/s",
    higherIsBetter: true,
    target: "≥ 1.5× peer",
    met: atLeast(1.5),
    ours: () => devices.ours.driverRead(N),
    peer: (p) => p.devices.driverRead(N)
  },
  {
    name: "driver_read_record",
    unit: "reads/s",
    higherIsBetter: true,
    target: "≥ 1.5× peer",
    met: atLeast(1.5),
    ours: () => devices.ours.driverRead(N, "record"),
    peer: (p) => p.devices.driverRead(N)
  },
  {
    name: "driver_read_schema_tools",
    unit: "reads/s",
    higherIsBetter: true,
    target: "(ours validates)",
    met: () => undefined,
    ours: () => devices.ours.driverRead(N, "live", "schema"),
    peer: (p) => p.devices.driverRead(N)
  },
  {
    name: "parallel_io_speedup",
    unit: "× of 16",
    higherIsBetter: true,
    target: "≥ 15.5×",
    met: (ours) => ours >= 15.5,
    ours: () => devices.ours.parallelSpeedup(),
    peer: (p) => p.devices.parallelSpeedup()
  },
  {
    name: "replay_10k_ops",
    unit: "ms",
    higherIsBetter: false,
    target: "≤ 100 ms",
    met: (ours) => ours <= 100,
    ours: () => devices.ours.replayMs(10_000)
  },
  {
    name: "mem_remember",
    unit: "segments/s",
    higherIsBetter: true,
    target: "≥ 1× peer",
    met: atLeast(1),
    ours: () => memory.ours.remember(N),
    peer: (p) => p.memory.remember(N)
  },
  {
    name: "mem_paging",
    unit: "segments/s",
    higherIsBetter: true,
    target: "≥ 2× peer",
    met: atLeast(2),
    ours: async () => (await memory.ours.paging(N, 1))[0],
    peer: async (p) => (await p.memory.paging(N, 1))[0]
  },
  {
    name: "mem_recall_100k_swapped",
    unit: "recalls/s",
    higherIsBetter: true,
    target: "≥ 1000× peer",
    met: atLeast(1000),
    ours: async () => (await memory.ours.paging(N, 2000))[1],
    peer: async (p) => (await p.memory.paging(N, 30))[1]
  },
  {
    name: "react_step",
    unit: "µs/step",
    higherIsBetter: false,
    target: "(scripted LLM)",
    met: () => undefined,
    ours: () => agents.ours.reactStep(200)
  },
  {
    name: "llm_call_overhead_p50",
    unit: "µs",
    higherIsBetter: false,
    target: "≤ 50 µs",
    met: (ours) => ours <= 50,
    ours: () => llm.overheadMicros(200, 1)
  }
]

const main = async () => {
  const peerModule = await loadPeer()
  const peer =
    peerModule === undefined
      ? undefined
      : { core: core.peer(peerModule), devices: devices.peer(peerModule), memory: memory.peer(peerModule) }
  const where = peerModule ? peerModule.dir : "absent (no ../shared/peers/agent-os-seed): peer columns are empty"
  console.log(`effect-agent-os bench: N=${N}, rounds=${ROUNDS}, node ${process.version}, peer ${where}`)
  if (typeof (globalThis as { gc?: unknown }).gc !== "function")
    console.log("note: run with --expose-gc for exact memory rows")
  const rows: Array<Array<string>> = [
    ["workload", "unit", "ours", "peer", "raw effect", "ours/peer", "ours/raw", "target", "met"]
  ]
  for (const spec of specs) {
    let ours: number | undefined
    let theirs: number | undefined
    let floor: number | undefined
    const better = (a: number | undefined, b: number) =>
      a === undefined ? b : spec.higherIsBetter ? Math.max(a, b) : Math.min(a, b)
    for (let round = 0; round < ROUNDS; round++) {
      ours = better(ours, await spec.ours())
      if (peer !== undefined && spec.peer !== undefined) theirs = better(theirs, await spec.peer(peer))
      if (spec.raw !== undefined) floor = better(floor, await spec.raw())
    }
    const ratio = (a: number, b: number | undefined) =>
      b === undefined ? undefined : spec.higherIsBetter ? a / b : b / a
    const vsPeer = ratio(ours!, theirs)
    const vsRaw = ratio(ours!, floor)
    const met = spec.met(ours!, vsPeer)
    rows.push([
      spec.name,
      spec.unit,
      String(ours),
      theirs === undefined ? (spec.peer === undefined ? "-" : "absent") : String(theirs),
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
  console.log("ratios: higher is better (for bytes and ms, peer/ours). Raw effect uses Effect's default scheduler.")
}

await main()
