import * as core from "./core.ts"
for (let i = 0; i < 3; i++) console.log(await core.ours.idleBytes(10000), await core.raw.idleBytes(10000))
