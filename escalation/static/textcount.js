/* The platform character counter, mirroring bot/textfit.count() exactly.
 *
 * The rule is data from textfit.rules_for(platform) (served by /console/rules.json,
 * escalation/lengths.py, with the account's reply_prefix);
 * tests/data/textfit_vectors.json holds both implementations to the same answers.
 * reply() mirrors escalation.lengths.composed_length: the prefix the sender puts first
 * (Mastodon: "@handle ") counts too.
 * Tokens, in order at each position: a URL, an (X) bare domain that may be a URL, a
 * (Mastodon) remote mention, else one grapheme cluster (Python's \X, here Intl.Segmenter).
 */
"use strict";

const TextCount = (() => {
  const compiled = new WeakMap();
  const segmenter = new Intl.Segmenter(undefined, { granularity: "grapheme" });

  // Python `regex` syntax used by textfit is also valid JS with the "u" flag,
  // except for (?P<name>...) groups, which textfit does not use in these patterns.
  function sticky(pattern) {
    return pattern ? new RegExp(pattern, "uy") : null;
  }

  function compile(rule) {
    let c = compiled.get(rule);
    if (!c) {
      c = {
        url: sticky(rule.url_pattern),
        maybeUrl: sticky(rule.maybe_url_pattern),
        mention: sticky(rule.mention_pattern),
        emojiBase: new RegExp(rule.emoji_base_pattern, "u"),
        emojiForm: new RegExp(rule.emoji_form_pattern, "u"),
      };
      compiled.set(rule, c);
    }
    return c;
  }

  /** Grapheme boundaries of text.slice(from), as absolute offsets. */
  function boundaries(text, from) {
    const set = new Set();
    for (const s of segmenter.segment(text.slice(from))) set.add(from + s.index);
    set.add(text.length);
    return set;
  }

  function weight(rule, cp) {
    for (const [lo, hi] of rule.ranges) if (cp >= lo && cp <= hi) return rule.range_weight;
    return rule.default_weight;
  }

  function graphemeUnits(rule, c, cluster) {
    if (rule.unit === "grapheme") return rule.scale;
    if (rule.emoji_weight !== null && c.emojiBase.test(cluster) && c.emojiForm.test(cluster)) {
      return rule.emoji_weight;
    }
    let n = 0;
    for (const ch of cluster) n += weight(rule, ch.codePointAt(0));
    return n;
  }

  function count(text, rule) {
    const c = compile(rule);
    text = text.normalize("NFC");
    let total = 0;
    let i = 0;
    let bounds = boundaries(text, 0);
    while (i < text.length) {
      if (c.url) {
        c.url.lastIndex = i;
        const m = c.url.exec(text);
        if (m && m[0].length) {
          total += rule.url_length !== null
            ? rule.url_length * rule.scale
            : graphemeUnits(rule, c, m[0]); // as textfit does when a URL has no fixed length
          i += m[0].length;
          continue;
        }
      }
      if (c.maybeUrl) {
        // A bare domain X may or may not link: never less than a link would count.
        c.maybeUrl.lastIndex = i;
        const m = c.maybeUrl.exec(text);
        if (m && m[0].length) {
          let written = 0;
          for (const s of segmenter.segment(m[0])) written += graphemeUnits(rule, c, s.segment);
          total += Math.max(rule.url_length * rule.scale, written);
          i += m[0].length;
          continue;
        }
      }
      if (c.mention) {
        c.mention.lastIndex = i;
        const m = c.mention.exec(text);
        if (m && m[0].length) {
          for (const s of segmenter.segment("@" + (m.groups.user || ""))) {
            total += graphemeUnits(rule, c, s.segment);
          }
          i += m[0].length;
          continue;
        }
      }
      // After a URL that ended inside a cluster, segment again from here (like \X would).
      if (!bounds.has(i)) bounds = boundaries(text, i);
      let j = i + 1;
      while (j < text.length && !bounds.has(j)) j += 1;
      total += graphemeUnits(rule, c, text.slice(i, j));
      i = j;
    }
    return Math.ceil(total / rule.scale);
  }

  function limit(rule, kind) {
    if (kind in rule.limits) return rule.limits[kind];
    return Math.min(...Object.values(rule.limits));
  }

  /** What the sender puts before the reply to this customer ("" for none). */
  function prefix(rule, handle) {
    const h = (handle || "").replace(/^@+/, "");
    return rule.reply_prefix && h ? rule.reply_prefix.replace("{handle}", h) : "";
  }

  /** The length of the reply as posted (before any cut): prefix + text. */
  function reply(text, rule, handle) {
    let body = text.trim();
    const p = prefix(rule, handle);
    if (!p) return count(body, rule);
    if (body.toLowerCase().startsWith(p.toLowerCase())) body = body.slice(p.length);
    return count(p, rule) + count(body, rule);
  }

  return { count, limit, prefix, reply };
})();

if (typeof module !== "undefined") module.exports = TextCount;
