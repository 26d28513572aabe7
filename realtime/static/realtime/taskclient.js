// The browser client lives in the taskstore app now; this old address keeps existing pages working.
export * from "../taskstore/taskclient.js";
