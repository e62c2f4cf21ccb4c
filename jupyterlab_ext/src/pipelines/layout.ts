/** Where the run graph puts its steps: a simple layered layout, pure and unit-tested. */

/** A link from one step to a step that uses its outputs. */
export interface IStepLink {
  from: string;
  to: string;
}

const LAYER_WIDTH = 190;
const ROW_HEIGHT = 70;

/**
 * Positions in layers, left to right: a step sits one layer after the latest step it depends on
 * (longest path). Without links every step is its own layer in the workflow's declared order,
 * which is the order cwltool reports them in.
 */
export function layeredLayout(
  steps: string[],
  links: IStepLink[] = []
): Record<string, { x: number; y: number }> {
  const layer: Record<string, number> = {};
  if (links.length === 0) {
    steps.forEach((s, i) => (layer[s] = i));
  } else {
    const before = new Map<string, string[]>();
    for (const link of links) {
      before.set(link.to, [...(before.get(link.to) || []), link.from]);
    }
    const visit = (s: string, seen: Set<string>): number => {
      if (s in layer) {
        return layer[s];
      }
      if (seen.has(s)) {
        return 0; // a cycle cannot be a valid workflow; do not loop on it
      }
      seen.add(s);
      const deps = (before.get(s) || []).filter(d => steps.includes(d));
      layer[s] = deps.length ? Math.max(...deps.map(d => visit(d, seen))) + 1 : 0;
      return layer[s];
    };
    steps.forEach(s => visit(s, new Set()));
  }
  const rows: Record<number, number> = {};
  const positions: Record<string, { x: number; y: number }> = {};
  for (const s of steps) {
    const row = rows[layer[s]] ?? 0;
    rows[layer[s]] = row + 1;
    positions[s] = { x: layer[s] * LAYER_WIDTH, y: row * ROW_HEIGHT };
  }
  return positions;
}
