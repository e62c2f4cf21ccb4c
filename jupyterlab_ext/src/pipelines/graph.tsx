/**
 * A run's workflow as a graph (React Flow): one node per step, coloured by its state.
 */
import { Edge, Handle, Node, NodeProps, Position, ReactFlow } from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import * as React from 'react';

import { IStepLink, layeredLayout } from './layout';
import { useMeasuredSizes } from '../flow';

export interface IGraphStep {
  name: string;
  /** `waiting`, `running`, `success`, `failed`, `skipped` or `not run`. */
  state: string;
}

type StepNodeData = { name: string; state: string; selected: boolean };

function StepNode(props: NodeProps<Node<StepNodeData>>): JSX.Element {
  const { name, state, selected } = props.data;
  return (
    <div
      className={`dl-step${selected ? ' dl-mod-selected' : ''}`}
      data-step={name}
      data-state={state}
      data-testid="dl-step"
    >
      <Handle type="target" position={Position.Left} isConnectable={false} />
      <div className="dl-step-name">{name}</div>
      <div className="dl-step-state">{state}</div>
      <Handle type="source" position={Position.Right} isConnectable={false} />
    </div>
  );
}

const nodeTypes = { step: StepNode };

export interface IRunGraphProps {
  steps: IGraphStep[];
  links?: IStepLink[];
  selected: string;
  onSelect: (step: string) => void;
}

export function RunGraph(props: IRunGraphProps): JSX.Element {
  const { record, keep } = useMeasuredSizes();
  const names = props.steps.map(s => s.name);
  const positions = layeredLayout(names, props.links);
  const nodes: Node<StepNodeData>[] = keep(
    props.steps.map(s => ({
      id: s.name,
      type: 'step',
      position: positions[s.name],
      data: { name: s.name, state: s.state, selected: s.name === props.selected },
      ariaLabel: `Step ${s.name}: ${s.state}`
    }))
  );
  const edges: Edge[] = (props.links || []).map(l => ({
    id: `${l.from}->${l.to}`,
    source: l.from,
    target: l.to,
    animated: props.steps.find(s => s.name === l.to)?.state === 'running'
  }));
  return (
    <div className="dl-graph" data-testid="dl-run-graph">
      <ReactFlow
        nodes={nodes}
        edges={edges}
        nodeTypes={nodeTypes}
        onNodesChange={record}
        nodesDraggable={false}
        nodesConnectable={false}
        fitView
        fitViewOptions={{ maxZoom: 1.2 }}
        minZoom={0.3}
        onNodeClick={(_, node) => props.onSelect(node.id)}
        proOptions={{ hideAttribution: true }}
      />
    </div>
  );
}
