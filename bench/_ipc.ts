import * as core from "./core.ts"
for (let i = 0; i < 3; i++) console.log(await core.ours.ipc(100000))
