"""Load a pipeline spec written by `sluice export kfp` with the Kubeflow Pipelines SDK, in the export
tests' own environment (tests/airflow/setup_env.sh), and print what the SDK made of it as JSON.

    python load_kfp_spec.py pipeline.yaml OUT_DIR

1. kfp.components.load_component_from_file: the SDK's loader for compiled pipelines;
2. the spec parsed strictly into KFP's PipelineSpec proto (an unknown or misspelt field fails);
3. the loaded pipeline used as a step of another pipeline and compiled again with kfp.compiler.
"""
import json
import os
import sys

import yaml
from google.protobuf import json_format
from kfp import compiler, components, dsl
from kfp.pipeline_spec import pipeline_spec_pb2

path, out_dir = sys.argv[1], sys.argv[2]
loaded = components.load_component_from_file(path)
with open(path) as f:
    spec = json_format.ParseDict(yaml.safe_load(f), pipeline_spec_pb2.PipelineSpec())


@dsl.pipeline(name='outer')
def outer():
    loaded()


recompiled = os.path.join(out_dir, 'outer.yaml')
compiler.Compiler().compile(outer, recompiled)
with open(recompiled) as f:
    outer_spec = yaml.safe_load(f)
[inner] = [c for c in outer_spec['components'].values() if 'dag' in c]
print(json.dumps({
    'component_name': loaded.name,
    'component_inputs': sorted(loaded.component_spec.inputs or {}),
    'proto_tasks': {name: {'component': t.component_ref.name, 'depends': list(t.dependent_tasks),
                           'retries': t.retry_policy.max_retry_count}
                    for name, t in spec.root.dag.tasks.items()},
    'proto_executors': {name: {'image': e.container.image, 'command': list(e.container.command)}
                        for name, e in spec.deployment_spec.fields['executors'].struct_value.fields.items()
                        for e in [json_format.ParseDict(json_format.MessageToDict(e.struct_value),
                                                        pipeline_spec_pb2.PipelineDeploymentConfig.ExecutorSpec())]},
    'recompiled_tasks': sorted(inner['dag']['tasks']),
}, sort_keys=True))
