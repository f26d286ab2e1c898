/**
 * effect-agent-os: an operating system for LLM agents on Effect v4.
 *
 * The root exports what users build with; the kernel's own tables (processes, capabilities, devices, mailboxes,
 * names, the inference scheduler, the virtual clock) are internal.
 *
 * @since 0.1.0
 */
export * as Accounts from "./services/Accounts.ts"
export * as BuiltinTools from "./daemon/BuiltinTools.ts"
export * as Capability from "./services/Capability.ts"
export * as ContextMemory from "./services/ContextMemory.ts"
export * as ConversationAgent from "./agents/ConversationAgent.ts"
export * as Device from "./services/Device.ts"
export * as Distiller from "./agents/Distiller.ts"
export * as EventLog from "./services/EventLog.ts"
export * as Evolution from "./agents/Evolution.ts"
export * as FileAccess from "./daemon/FileAccess.ts"
export * as Journal from "./services/Journal.ts"
export * as Agentd from "./daemon/Agentd.ts"
export * as AgentdApi from "./daemon/Api.ts"
export * as JsonRpc from "./daemon/JsonRpc.ts"
export * as Kv from "./drivers/Kv.ts"
export * as Llm from "./drivers/Llm.ts"
export * as OpenAiLanguageModel from "./drivers/OpenAiLanguageModel.ts"
export * as LineServer from "./daemon/LineServer.ts"
export * as LongTermMemory from "./agents/LongTermMemory.ts"
export * as Manifest from "./daemon/Manifest.ts"
export * as JournalFileStore from "./services/JournalFileStore.ts"
export * as Kernel from "./layers/Kernel.ts"
export * as KernelConfig from "./services/KernelConfig.ts"
export * as NameService from "./agents/NameService.ts"
export * as Nursery from "./agents/Nursery.ts"
export * as Persona from "./agents/Persona.ts"
export * as Process from "./services/Process.ts"
export * as Prompts from "./agents/Prompts.ts"
export * as ReactAgent from "./agents/ReactAgent.ts"
export * as Sandbox from "./agents/Sandbox.ts"
export * as Snapshot from "./services/Snapshot.ts"
export * as Supervisor from "./agents/Supervisor.ts"
export * as Sys from "./services/Sys.ts"
export * as Tools from "./drivers/Tools.ts"
export * as Wasm from "./drivers/Wasm.ts"
export * as Worker from "./drivers/Worker.ts"
