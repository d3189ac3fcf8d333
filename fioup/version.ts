/** fioup's version, sent as `user-agent: fioup/<version>`. */
export const FIOUP_VERSION = "0.1.0";
