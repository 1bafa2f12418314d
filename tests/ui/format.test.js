// The words the desk puts on screen, without a browser: ages, due times, money, states.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { agoSecs, deviceName, dueWords, laneName, money, personName, plural, statusWords } from "../../ui/format.js";

describe("desk wording", () => {
  it("says how old data is at a glance", () => {
    assert.equal(agoSecs(null), "never");
    assert.equal(agoSecs(0), "just now");
    assert.equal(agoSecs(59), "just now");
    assert.equal(agoSecs(60), "1 min ago");
    assert.equal(agoSecs(3 * 60 + 20), "3 min ago");
    assert.equal(agoSecs(2 * 3600 + 10 * 60), "2 h 10 min ago");
    assert.equal(agoSecs(7 * 3600 + 10 * 60), "7 h ago");
    assert.equal(agoSecs(3 * 86400), "3 days ago");
    assert.equal(agoSecs(-5), "just now", "a clock a little ahead is not the future");
  });

  it("says when an order is due, and how late", () => {
    const now = new Date("2026-11-25T10:00:00Z");
    assert.equal(dueWords("2026-11-25T10:25:00Z", now), "in 25 min");
    assert.equal(dueWords("2026-11-25T12:05:00Z", now), "in 2 h 5 min");
    assert.equal(dueWords("2026-11-25T13:00:00Z", now), "in 3 h");
    assert.equal(dueWords("2026-11-25T10:00:30Z", now), "due now");
    assert.equal(dueWords("2026-11-25T09:50:00Z", now), "overdue by 10 min");
  });

  it("names states and amounts in plain words", () => {
    assert.equal(statusWords("placed").text, "Not staged yet");
    assert.equal(statusWords("partially_handed_over").text, "Partly handed over");
    assert.equal(statusWords("something_new").text, "something_new");
    assert.equal(money(9300, "USD").replace(/\s/g, ""), "$93.00");
    assert.equal(plural(1, "item"), "1 item");
    assert.equal(plural(4, "entry", "entries"), "4 entries");
  });

  it("names lanes, desks and people instead of their ids", () => {
    assert.equal(laneName("register-4"), "Register 4");
    assert.equal(laneName("sco-03"), "Self-checkout 3");
    assert.equal(laneName("back-office"), "back-office");
    assert.equal(deviceName("127.0.0.1"), "Service desk");
    assert.equal(deviceName("::1"), "Service desk");
    assert.equal(deviceName("sco-01"), "Self-checkout 1");
    assert.equal(personName("E12345", "Ana Lopez"), "Ana Lopez");
    assert.equal(personName("E12345", null), "E12345");
  });
});
