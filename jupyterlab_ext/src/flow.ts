/**
 * What the two React Flow canvases (the run graph and the Pipeline Editor) share.
 */
import { Node, NodeChange } from '@xyflow/react';
import * as React from 'react';

/**
 * Keeps the size React Flow measured for each node across re-renders. React Flow draws a
 * node's edges only once it has measured the node, and measures anew (edges hidden meanwhile)
 * any node it is handed without its size, which is every node when they are built afresh from
 * the model on each change. `record` takes React Flow's node changes; `keep` gives nodes their
 * last measured size.
 */
export function useMeasuredSizes(): {
  record: (changes: NodeChange[]) => void;
  keep: <N extends Node>(nodes: N[]) => N[];
} {
  const sizes = React.useRef<Record<string, { width: number; height: number }>>({});
  const record = React.useCallback((changes: NodeChange[]) => {
    for (const change of changes) {
      if (change.type === 'dimensions' && change.dimensions) {
        sizes.current[change.id] = change.dimensions;
      }
    }
  }, []);
  const keep = React.useCallback(
    <N extends Node>(nodes: N[]) =>
      nodes.map(n => (sizes.current[n.id] ? { ...n, measured: sizes.current[n.id] } : n)),
    []
  );
  return { record, keep };
}
