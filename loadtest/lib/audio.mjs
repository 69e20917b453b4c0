// audio.mjs - the audio the kit sends, generated (no files, nothing from the
// network): 16-bit little-endian mono PCM, a voiced "utterance" (a few
// harmonics on a gliding pitch, shaped into syllables, with a little noise)
// and silence, cut into real-time frames.

// One second of speech-like PCM16 at `rate` Hz, deterministic.
export function speechSecond(rate) {
  const n = rate;
  const b = Buffer.alloc(n * 2);
  let seed = 0x2545f491;
  let phase = 0;
  for (let i = 0; i < n; i++) {
    const t = i / rate;
    const f0 = 140 + 30 * Math.sin(2 * Math.PI * 0.7 * t); // gliding pitch
    phase += (2 * Math.PI * f0) / rate;
    const syllable = 0.5 - 0.5 * Math.cos(2 * Math.PI * 4 * t); // ~4 syllables/s
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    const noise = (seed / 0xffffffff - 0.5) * 0.05;
    const v = syllable * (0.6 * Math.sin(phase) + 0.25 * Math.sin(2 * phase) + 0.1 * Math.sin(3 * phase)) + noise;
    b.writeInt16LE(Math.max(-32767, Math.min(32767, Math.round(v * 12000))), i * 2);
  }
  return b;
}

// Frames of `frameMs` for a stream that alternates speech and silence as
// the caller asks: frame(k, speaking) returns a Buffer (views into a
// one-second buffer, so no per-frame allocation).
export class PcmSource {
  constructor(rate, frameMs) {
    this.rate = rate;
    this.frameMs = frameMs;
    this.frameBytes = Math.round((rate * frameMs) / 1000) * 2;
    this.speech = speechSecond(rate);
    this.silence = Buffer.alloc(this.speech.length);
    this.perSecond = Math.floor(this.speech.length / this.frameBytes);
  }

  frame(k, speaking = true) {
    const src = speaking ? this.speech : this.silence;
    const off = (k % this.perSecond) * this.frameBytes;
    return src.subarray(off, off + this.frameBytes);
  }

  secondsOf(frames) {
    return (frames * this.frameBytes) / 2 / this.rate;
  }
}
