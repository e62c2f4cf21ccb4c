/**
 * The Pipeline Editor's canvas (React Flow): workflow inputs, steps and outputs as nodes with a
 * handle per port, links as edges; the palette on the left, the properties of the selected node
 * on the right, notices and validation problems below.
 */
import {
  Background,
  Connection,
  Controls,
  Edge,
  Handle,
  MiniMap,
  Node,
  NodeChange,
  NodeProps,
  Position,
  ReactFlow,
  ReactFlowProvider,
  applyNodeChanges,
  useReactFlow
} from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import * as React from 'react';

import { useMeasuredSizes } from '../flow';
import { EditorController } from './controller';
import {
  addInputFor,
  addOutputFrom,
  disconnect,
  edgeId,
  editNode,
  nodeHeight,
  removeNodes,
  setPositions
} from './model';
import { PropertiesPanel } from './properties';
import { IEdge, IGraph, INode, IPaletteTool, IPort, IProblem } from './types';

export const TOOL_MIME = 'application/x-datalabs-tool';

interface INodeData extends Record<string, unknown> {
  node: INode;
  problems: IProblem[];
  state: string | null;
  inner: boolean;
  expanded: boolean;
  onToggle: (id: string) => void;
}

function PortRow(props: { port: IPort; side: 'in' | 'out'; connectable: boolean }): JSX.Element {
  const { port, side, connectable } = props;
  return (
    <div className={`dl-editor-port dl-editor-port-${side}`} title={`${port.id}: ${port.type_label}`}>
      {side === 'in' && (
        <Handle
          type="target"
          position={Position.Left}
          id={`in:${port.id}`}
          isConnectable={connectable}
          title={`input ${port.id} (${port.type_label})`}
        />
      )}
      <span className="dl-editor-port-name">{port.id}</span>
      <span className="dl-editor-port-type">
        {port.type_label}
        {port.has_default ? ' =' : ''}
      </span>
      {side === 'out' && (
        <Handle
          type="source"
          position={Position.Right}
          id={`out:${port.id}`}
          isConnectable={connectable}
          title={`output ${port.id} (${port.type_label})`}
        />
      )}
    </div>
  );
}

function StepNode(props: NodeProps<Node<INodeData>>): JSX.Element {
  const { node, problems, state, inner, expanded, onToggle } = props.data;
  const scattered = (node.scatter ?? []).length > 0;
  const sub = node.subgraph;
  return (
    <div
      className={[
        'dl-editor-node',
        'dl-editor-step',
        problems.length ? 'dl-has-problem' : '',
        state ? `dl-state-${state}` : '',
        scattered ? 'dl-scattered' : '',
        expanded ? 'dl-expanded' : ''
      ].join(' ')}
      data-step={node.id}
      data-state={state ?? undefined}
    >
      <div className="dl-editor-node-title">
        <span className="dl-editor-node-id">{node.id}</span>
        {scattered && (
          <span className="dl-editor-badge" title={`scatter over ${node.scatter!.join(', ')}`}>
            scatter
          </span>
        )}
        {node.when && (
          <span className="dl-editor-badge" title={`when ${node.when}`}>
            when
          </span>
        )}
        {sub && (
          <button
            className="dl-editor-expand nodrag"
            aria-expanded={expanded}
            aria-label={`${expanded ? 'Collapse' : 'Expand'} the subworkflow ${node.id}`}
            onClick={() => onToggle(node.id)}
          >
            {expanded ? '▾' : '▸'} {sub.nodes.filter(n => n.kind === 'step').length} steps
          </button>
        )}
      </div>
      <div className="dl-editor-node-run">{node.label ?? runName(node)}</div>
      {state && <div className="dl-editor-node-state">{state}</div>}
      <div className="dl-editor-ports">
        <div>
          {node.inputs.map(p => (
            <PortRow key={p.id} port={p} side="in" connectable={!inner} />
          ))}
        </div>
        <div>
          {node.outputs.map(p => (
            <PortRow key={p.id} port={p} side="out" connectable={!inner} />
          ))}
        </div>
      </div>
      {problems.length > 0 && (
        <div className="dl-editor-node-problem" role="note">
          {problems[0].message}
        </div>
      )}
    </div>
  );
}

function ParamNode(props: NodeProps<Node<INodeData>>): JSX.Element {
  const { node, problems, inner } = props.data;
  const isInput = node.kind === 'input';
  const port = isInput ? node.outputs[0] : node.inputs[0];
  return (
    <div
      className={[
        'dl-editor-node',
        `dl-editor-${node.kind}`,
        problems.length ? 'dl-has-problem' : ''
      ].join(' ')}
      data-param={node.id}
    >
      {!isInput && (
        <Handle
          type="target"
          position={Position.Left}
          id={`in:${node.id}`}
          isConnectable={!inner}
          title={`workflow output ${node.id}`}
        />
      )}
      <div className="dl-editor-node-kind">{isInput ? 'input' : 'output'}</div>
      <div className="dl-editor-node-id">{node.id}</div>
      <div className="dl-editor-port-type">{port?.type_label ?? 'Any'}</div>
      {isInput && (
        <Handle
          type="source"
          position={Position.Right}
          id={`out:${node.id}`}
          isConnectable={!inner}
          title={`workflow input ${node.id}`}
        />
      )}
      {problems.length > 0 && (
        <div className="dl-editor-node-problem" role="note">
          {problems[0].message}
        </div>
      )}
    </div>
  );
}

const nodeTypes = { step: StepNode, param: ParamNode };

function runName(node: INode): string {
  if (typeof node.run === 'string') {
    return node.run.split('/').pop() ?? node.run;
  }
  return node.run_class ?? (node.subgraph ? 'inline workflow' : 'inline tool');
}

const STEP_WIDTH = 220;

/** Size of a drawn subgraph (its node positions), for the box of an expanded step. */
function bounds(graph: IGraph): { w: number; h: number } {
  let w = 0;
  let h = 0;
  for (const n of graph.nodes) {
    const [x, y] = n.position ?? [0, 0];
    w = Math.max(w, x + STEP_WIDTH);
    h = Math.max(h, y + nodeHeight(n));
  }
  return { w: w + 40, h: h + 20 };
}

/** Where the nodes of an expanded subworkflow start inside its step's box. */
function innerTop(n: INode): number {
  return 56 + 26 * Math.max(n.inputs.length, n.outputs.length);
}

function flowNodes(
  graph: IGraph,
  problems: IProblem[],
  states: Record<string, string>,
  expanded: Set<string>,
  onToggle: (id: string) => void,
  selected: string | null
): Node<INodeData>[] {
  const out: Node<INodeData>[] = [];
  graph.nodes.forEach((n, i) => {
    const [x, y] = n.position ?? [i * 40, i * 40];
    const open = !!n.subgraph && expanded.has(n.id);
    const size = open && n.subgraph ? bounds(n.subgraph) : null;
    out.push({
      id: n.id,
      type: n.kind === 'step' ? 'step' : 'param',
      position: { x, y },
      selected: n.id === selected,
      data: {
        node: n,
        problems: problems.filter(p => p.node === n.id),
        state: states[n.id] ?? null,
        inner: false,
        expanded: open,
        onToggle
      },
      style: size
        ? { width: Math.max(STEP_WIDTH, size.w), height: innerTop(n) + size.h }
        : undefined
    });
    if (open && n.subgraph) {
      const top = innerTop(n);
      for (const c of n.subgraph.nodes) {
        const [cx, cy] = c.position ?? [0, 0];
        out.push({
          id: `${n.id}::${c.id}`,
          type: c.kind === 'step' ? 'step' : 'param',
          parentId: n.id,
          extent: 'parent',
          position: { x: cx + 20, y: cy + top },
          draggable: false,
          selectable: false,
          connectable: false,
          className: 'dl-editor-inner',
          data: {
            node: c,
            problems: [],
            state: null,
            inner: true,
            expanded: false,
            onToggle
          }
        });
      }
    }
  });
  return out;
}

function flowEdges(
  graph: IGraph,
  problems: IProblem[],
  expanded: Set<string>
): Edge[] {
  const bad = new Set(problems.flatMap(p => p.edges.map(edgeId)));
  const edges: Edge[] = graph.edges.map(e => ({
    id: edgeId(e),
    source: e.source,
    target: e.target,
    sourceHandle: `out:${e.source_port}`,
    targetHandle: `in:${e.target_port}`,
    className: bad.has(edgeId(e)) ? 'dl-edge-problem' : undefined,
    data: { edge: e }
  }));
  for (const n of graph.nodes) {
    if (n.subgraph && expanded.has(n.id)) {
      for (const e of n.subgraph.edges) {
        edges.push({
          id: `${n.id}::${edgeId(e)}`,
          source: `${n.id}::${e.source}`,
          target: `${n.id}::${e.target}`,
          sourceHandle: `out:${e.source_port}`,
          targetHandle: `in:${e.target_port}`,
          selectable: false,
          className: 'dl-edge-inner'
        });
      }
    }
  }
  return edges;
}

function Palette(props: {
  tools: IPaletteTool[];
  onAdd: (tool: IPaletteTool) => void;
  self: string;
}): JSX.Element {
  const [filter, setFilter] = React.useState('');
  const words = filter.toLowerCase().split(/\s+/).filter(Boolean);
  const shown = props.tools.filter(
    t =>
      t.path !== props.self &&
      words.every(w => `${t.label} ${t.path ?? ''} ${t.pipeline ?? ''}`.toLowerCase().includes(w))
  );
  return (
    <div className="dl-editor-palette" role="region" aria-label="Tools and workflows">
      <div className="dl-editor-section-title">Palette</div>
      <input
        className="jp-mod-styled dl-editor-filter"
        placeholder="Filter tools"
        aria-label="Filter tools"
        value={filter}
        onChange={e => setFilter(e.target.value)}
      />
      <ul>
        {shown.map(t => (
          <li
            key={t.key}
            className="dl-editor-tool"
            draggable
            data-tool={t.key}
            title={`${t.doc ?? t.label}\nDrag onto the canvas, or press Add`}
            onDragStart={e => {
              e.dataTransfer.setData(TOOL_MIME, t.key);
              e.dataTransfer.effectAllowed = 'copy';
            }}
          >
            <div className="dl-editor-tool-label">{t.label}</div>
            <div className="dl-editor-tool-where">
              {t.class === 'Workflow' ? 'workflow · ' : ''}
              {t.pipeline ?? t.path}
            </div>
            <button
              className="dl-editor-tool-add"
              aria-label={`Add ${t.label} as a step`}
              onClick={() => props.onAdd(t)}
            >
              Add
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}

function Problems(props: { problems: IProblem[]; onPick: (node: string) => void }): JSX.Element {
  if (!props.problems.length) {
    return <></>;
  }
  return (
    <ul className="dl-editor-problems" aria-label="Validation problems">
      {props.problems.map((p, i) => (
        <li key={i}>
          {p.node ? (
            <button className="dl-editor-link" onClick={() => props.onPick(p.node!)}>
              {p.node}
              {p.port ? `/${p.port}` : ''}
            </button>
          ) : null}
          {p.line ? ` line ${p.line}: ` : ' '}
          {p.message}
        </li>
      ))}
    </ul>
  );
}

function useController(controller: EditorController): number {
  const [version, setVersion] = React.useState(0);
  React.useEffect(() => controller.subscribe(() => setVersion(v => v + 1)), [controller]);
  return version;
}

function Canvas(props: { controller: EditorController }): JSX.Element {
  const { controller } = props;
  useController(controller);
  const flow = useReactFlow();
  const graph = controller.graph;
  const [expanded, setExpanded] = React.useState<Set<string>>(new Set());
  const [nodes, setNodes] = React.useState<Node<INodeData>[]>([]);
  const { record, keep } = useMeasuredSizes();
  const toggle = React.useCallback(
    (id: string) =>
      setExpanded(old => {
        const next = new Set(old);
        if (next.has(id)) {
          next.delete(id);
        } else {
          next.add(id);
        }
        return next;
      }),
    []
  );

  React.useEffect(() => {
    if (graph) {
      setNodes(
        keep(flowNodes(graph, controller.problems, controller.runStates, expanded, toggle, controller.selected))
      );
    }
  }, [graph, controller.problems, controller.runStates, expanded, controller.selected]);

  React.useEffect(() => {
    // A newly loaded graph is fitted into view once React Flow has measured its nodes.
    const timer = setTimeout(() => void flow.fitView({ padding: 0.15 }), 60);
    return () => clearTimeout(timer);
  }, [graph !== null, expanded]);

  if (!graph) {
    return (
      <div className="dl-editor-empty">
        {controller.loadError ?? 'Loading the workflow…'}
        {controller.choices.length > 0 && (
          <ul className="dl-editor-choices" aria-label="Workflows in this document">
            {controller.choices.map(id => (
              <li key={id}>
                <button className="jp-Button" onClick={() => void controller.choose(id)}>
                  Open {id}
                </button>
              </li>
            ))}
          </ul>
        )}
      </div>
    );
  }
  const edges = flowEdges(graph, controller.problems, expanded);
  const byKey = (key: string) => controller.palette.find(t => t.key === key);

  const onConnect = (c: Connection) => {
    if (!c.sourceHandle || !c.targetHandle) {
      return;
    }
    const edge: IEdge = {
      source: c.source,
      source_port: c.sourceHandle.replace(/^out:/, ''),
      target: c.target,
      target_port: c.targetHandle.replace(/^in:/, '')
    };
    void controller.connect(edge);
  };

  const onNodesChange = (changes: NodeChange<Node<INodeData>>[]) => {
    setNodes(ns => applyNodeChanges(changes, ns));
    record(changes);
    const moved: Record<string, [number, number]> = {};
    for (const c of changes) {
      if (c.type === 'position' && c.dragging === false && c.position) {
        // A click on a node ends a "drag" that went nowhere: not an edit to undo.
        const was = controller.graph?.nodes.find(n => n.id === c.id)?.position;
        if (!was || Math.round(was[0]) !== Math.round(c.position.x) || Math.round(was[1]) !== Math.round(c.position.y)) {
          moved[c.id] = [c.position.x, c.position.y];
        }
      }
      if (c.type === 'select' && c.selected && !c.id.includes('::')) {
        controller.select(c.id);
      }
    }
    if (Object.keys(moved).length && controller.graph) {
      controller.apply(setPositions(controller.graph, moved));
    }
  };

  return (
    <div
      className="dl-editor-canvas"
      role="region"
      tabIndex={0}
      aria-label="Workflow canvas: Delete removes the selection, Ctrl+Z undoes, Ctrl+Shift+Z redoes"
      onDragOver={e => {
        if (e.dataTransfer.types.includes(TOOL_MIME)) {
          e.preventDefault();
          e.dataTransfer.dropEffect = 'copy';
        }
      }}
      onDrop={e => {
        const tool = byKey(e.dataTransfer.getData(TOOL_MIME));
        if (tool) {
          e.preventDefault();
          const p = flow.screenToFlowPosition({ x: e.clientX, y: e.clientY });
          void controller.addTool(tool, [Math.round(p.x), Math.round(p.y)]);
        }
      }}
    >
      <ReactFlow
        nodes={nodes}
        edges={edges}
        nodeTypes={nodeTypes}
        onNodesChange={onNodesChange}
        onConnect={onConnect}
        onPaneClick={() => controller.select(null)}
        onNodesDelete={deleted => {
          const ids = deleted.map(n => n.id).filter(id => !id.includes('::'));
          if (ids.length && controller.graph) {
            controller.apply(removeNodes(controller.graph, ids), true);
            controller.select(null);
          }
        }}
        onEdgesDelete={deleted => {
          const gone = deleted.map(d => d.data?.edge as IEdge | undefined).filter(Boolean);
          if (gone.length && controller.graph) {
            controller.apply(disconnect(controller.graph, gone as IEdge[]));
          }
        }}
        deleteKeyCode={['Delete', 'Backspace']}
        minZoom={0.1}
        proOptions={{ hideAttribution: true }}
      >
        <Background />
        <Controls />
        <MiniMap pannable zoomable ariaLabel="Overview of the workflow" />
      </ReactFlow>
    </div>
  );
}

/** The whole editor: palette, canvas, properties, notices. */
export function EditorView(props: { controller: EditorController }): JSX.Element {
  const { controller } = props;
  useController(controller);
  const graph = controller.graph;
  const notice = controller.notice;
  const selected = graph?.nodes.find(n => n.id === controller.selected) ?? null;
  return (
    <div className="dl-editor">
      <Palette
        tools={controller.palette}
        self={controller.path}
        onAdd={tool => void controller.addTool(tool, null)}
      />
      <div className="dl-editor-main">
        {notice && (
          <div
            className={`dl-editor-notice dl-editor-notice-${notice.kind}`}
            role={notice.kind === 'error' ? 'alert' : 'status'}
          >
            <span>{notice.text}</span>
            <button
              className="dl-editor-link"
              aria-label="Dismiss"
              onClick={() => controller.say(null)}
            >
              ×
            </button>
          </div>
        )}
        <ReactFlowProvider>
          <Canvas controller={controller} />
        </ReactFlowProvider>
        <Problems problems={controller.problems} onPick={id => controller.select(id)} />
      </div>
      {graph && (
        <PropertiesPanel
          key={selected?.id ?? '-'}
          graph={graph}
          node={selected}
          onChange={(change, replace) =>
            controller.apply(editNode(graph, selected!.id, change), replace)
          }
          onAddInput={port => controller.apply(addInputFor(graph, selected!.id, port), true)}
          onAddOutput={port => controller.apply(addOutputFrom(graph, selected!.id, port), true)}
        />
      )}
    </div>
  );
}
