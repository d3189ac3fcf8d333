/** Files imported `with { type: "text" }` (a systemd unit written into an image): their text, embedded at build. */
declare module "*.service" {
  const text: string;
  export default text;
}
