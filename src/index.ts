/**
 * effect-agent-os: an operating system for LLM agents on Effect v4.
 *
 * @since 0.1.0
 */
export * as Accounts from "./services/Accounts.ts"
export * as Capability from "./services/Capability.ts"
export * as CapabilityTable from "./services/CapabilityTable.ts"
export * as ContextMemory from "./services/ContextMemory.ts"
export * as Device from "./services/Device.ts"
export * as DeviceTable from "./services/DeviceTable.ts"
export * as EventLog from "./services/EventLog.ts"
export * as InferenceScheduler from "./services/InferenceScheduler.ts"
export * as Journal from "./services/Journal.ts"
export * as Kv from "./drivers/Kv.ts"
export * as Llm from "./drivers/Llm.ts"
export * as JournalFileStore from "./services/JournalFileStore.ts"
export * as Kernel from "./layers/Kernel.ts"
export * as KernelConfig from "./services/KernelConfig.ts"
export * as Mailbox from "./services/Mailbox.ts"
export * as NameRegistry from "./services/NameRegistry.ts"
export * as Process from "./services/Process.ts"
export * as ProcessTable from "./services/ProcessTable.ts"
export * as Sys from "./services/Sys.ts"
export * as Tools from "./drivers/Tools.ts"
export * as VirtualTime from "./services/VirtualTime.ts"
export * as Wasm from "./drivers/Wasm.ts"
export * as Worker from "./drivers/Worker.ts"
