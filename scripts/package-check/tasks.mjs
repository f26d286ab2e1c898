// The Worker driver's task module in the package check's app.
export const add = ({ a, b }) => a + b
