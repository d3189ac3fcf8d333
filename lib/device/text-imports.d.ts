/** Files imported `with { type: "text" }` (lib/device/fioup.service, which preload writes into an image): their text, embedded at build. */
declare module "*.service" {
  const text: string;
  export default text;
}
