/* @jsxImportSource hono/jsx */
/** Charts as inline SVG (no script, no library), each with a text alternative. */

export interface Bar {
  label: string;
  value: number;
  href?: string;
}

/** Horizontal bars, one row per label, scaled to the largest value. */
export function BarChart({ bars, title }: { bars: Bar[]; title: string }) {
  if (!bars.length) return <p class="muted">Nothing to show yet.</p>;
  const max = Math.max(...bars.map((b) => b.value), 1);
  const row = 22;
  const labelW = 170;
  const width = 560;
  return (
    <svg viewBox={`0 0 ${width} ${bars.length * row + 4}`} width="100%" role="img" aria-label={title}>
      <title>{`${title}: ${bars.map((b) => `${b.label} ${b.value}`).join(", ")}`}</title>
      {bars.map((b, i) => {
        const w = Math.max(2, ((width - labelW - 60) * b.value) / max);
        const y = i * row + 2;
        const label = b.label.length > 26 ? `${b.label.slice(0, 25)}…` : b.label;
        const text = (
          <text x={labelW - 6} y={y + 14} text-anchor="end">
            {label}
          </text>
        );
        return (
          <g>
            {b.href ? <a href={b.href}>{text}</a> : text}
            <rect class="bar" x={labelW} y={y + 2} width={w} height={row - 6} rx="3" />
            <text x={labelW + w + 6} y={y + 14}>
              {String(b.value)}
            </text>
          </g>
        );
      })}
    </svg>
  );
}

/** A small column chart of a series (oldest first), e.g. check-ins per minute. */
export function ColumnChart({ values, title, unit }: { values: number[]; title: string; unit: string }) {
  const max = Math.max(...values, 1);
  const width = 300;
  const height = 80;
  const w = width / Math.max(values.length, 1);
  return (
    <svg viewBox={`0 0 ${width} ${height + 14}`} width="100%" role="img" aria-label={title}>
      <title>{`${title}: latest ${values.at(-1) ?? 0} ${unit}, highest ${max}`}</title>
      <line class="axis" x1="0" x2={width} y1={height} y2={height} />
      {values.map((v, i) => {
        const h = (height - 4) * (v / max);
        return <rect class="bar" x={i * w + 1} y={height - h} width={Math.max(w - 2, 1)} height={h} />;
      })}
      <text x="0" y={height + 12}>{`${values.length} min ago`}</text>
      <text x={width} y={height + 12} text-anchor="end">
        {`now: ${values.at(-1) ?? 0} ${unit}`}
      </text>
    </svg>
  );
}
