"""The keys and enumerations the loader accepts, in one place.

Key sets follow azure-ai-ml's marshmallow schemas (docs/contract.md §1.4). Keys that
parajob reads but does not act on locally (``identity``, ``resources.instance_type``, ...)
are accepted and recorded, so a file that runs on the service loads here unchanged.
``UNSUPPORTED`` names keys of the schema that parajob cannot act on: they are errors that
say so, rather than "unknown key". To add a step type, add its key set here and a builder
module beside ``parallel.py`` and ``command.py``.
"""

from __future__ import annotations

__all__ = [
    "PIPELINE_KEYS",
    "SETTINGS_KEYS",
    "PARALLEL_STEP_KEYS",
    "PARALLEL_JOB_KEYS",
    "RESOURCES_KEYS",
    "RETRY_KEYS",
    "TASK_KEYS",
    "INPUT_KEYS",
    "OUTPUT_KEYS",
    "ENVIRONMENT_KEYS",
    "PARALLEL_COMPONENT_KEYS",
    "COMMAND_STEP_KEYS",
    "COMMAND_JOB_KEYS",
    "COMMAND_COMPONENT_KEYS",
    "INPUT_PORT_KEYS",
    "OUTPUT_PORT_KEYS",
    "LIMITS_KEYS",
    "COMPONENT_ONLY_KEYS",
    "DATA_INPUT_TYPES",
    "LITERAL_INPUT_TYPES",
    "INPUT_TYPES",
    "OUTPUT_TYPES",
    "INPUT_MODES",
    "OUTPUT_MODES",
    "LOGGING_LEVELS",
    "TASK_TYPES",
    "STEP_TYPES",
    "UNRUNNABLE_STEP_TYPES",
    "UNSUPPORTED",
    "MISPLACED_IN_STEP",
    "MISPLACED_IN_COMMAND",
    "MISPLACED_IN_TASK",
    "MAX_TIMEOUT",
]

MAX_TIMEOUT = 259200  # seconds: the service's bound for retry_settings.timeout

PIPELINE_KEYS = frozenset(
    {
        "$schema",
        "type",
        "name",
        "display_name",
        "description",
        "tags",
        "properties",
        "experiment_name",
        "compute",
        "settings",
        "inputs",
        "outputs",
        "jobs",
        "identity",
    }
)
SETTINGS_KEYS = frozenset(
    {
        "default_compute",
        "default_datastore",
        "continue_on_step_failure",
        "force_rerun",
        "default_environment",
    }
)

# What every component file starts with, parallel or command.
_COMPONENT_HEAD = frozenset(
    {
        "$schema",
        "type",
        "name",
        "version",
        "display_name",
        "description",
        "tags",
        "properties",
        "is_deterministic",
    }
)
# What a parallel node and a parallel component both set (ParameterizedParallelSchema).
_PARALLEL_SETTINGS = frozenset(
    {
        "inputs",
        "outputs",
        "input_data",
        "mini_batch_size",
        "partition_keys",
        "resources",
        "max_concurrency_per_instance",
        "mini_batch_error_threshold",
        "error_threshold",
        "retry_settings",
        "logging_level",
        "environment_variables",
        "task",
    }
)
# A parallel node inside ``jobs:`` (azure-ai-ml's PipelineParallelJobSchema:
# BaseNodeSchema + ParameterizedParallelSchema).
PARALLEL_STEP_KEYS = _PARALLEL_SETTINGS | {
    "type",
    "name",
    "display_name",
    "description",
    "tags",
    "properties",
    "compute",
    "component",
    "identity",
    "is_deterministic",
    "experiment_name",
}
# A whole file that is one parallel job (``type: parallel`` at the top).
PARALLEL_JOB_KEYS = PARALLEL_STEP_KEYS | {"$schema"}
# A parallel component file (azure-ai-ml's ParallelComponentSchema).
COMPONENT_ONLY_KEYS = frozenset({"$schema", "version", "is_deterministic"})
PARALLEL_COMPONENT_KEYS = _PARALLEL_SETTINGS | _COMPONENT_HEAD

# A command node inside ``jobs:`` (CommandSchema + BaseNodeSchema) and a command component.
COMMAND_STEP_KEYS = frozenset(
    {
        "type",
        "name",
        "display_name",
        "description",
        "tags",
        "properties",
        "compute",
        "component",
        "command",
        "code",
        "inputs",
        "outputs",
        "environment",
        "environment_variables",
        "resources",
        "distribution",
        "limits",
        "identity",
        "is_deterministic",
        "experiment_name",
        "services",
        "queue_settings",
    }
)
COMMAND_JOB_KEYS = COMMAND_STEP_KEYS | {"$schema"}
COMMAND_COMPONENT_KEYS = _COMPONENT_HEAD | frozenset(
    {
        "command",
        "code",
        "inputs",
        "outputs",
        "environment",
        "environment_variables",
        "resources",
        "distribution",
        "additional_includes",
    }
)
LIMITS_KEYS = frozenset({"timeout"})

# What a component declares for each port.
INPUT_PORT_KEYS = frozenset(
    {
        "type",
        "description",
        "optional",
        "default",
        "mode",
        "min",
        "max",
        "enum",
    }
)
OUTPUT_PORT_KEYS = frozenset({"type", "description", "mode", "is_control", "early_available"})

RESOURCES_KEYS = frozenset(
    {
        "instance_count",
        "instance_type",
        "shm_size",
        "docker_args",
        "max_instance_count",
        "locations",
        "properties",
    }
)
RETRY_KEYS = frozenset({"max_retries", "timeout"})
TASK_KEYS = frozenset(
    {
        "type",
        "code",
        "entry_script",
        "program_arguments",
        "append_row_to",
        "environment",
        "model",
    }
)
INPUT_KEYS = frozenset(
    {
        "type",
        "path",
        "mode",
        "description",
        "optional",
        "default",
        "value",
        "datastore",
        "path_on_compute",
    }
)
OUTPUT_KEYS = frozenset(
    {
        "type",
        "path",
        "mode",
        "description",
        "datastore",
        "path_on_compute",
        "name",
        "version",
    }
)
ENVIRONMENT_KEYS = frozenset(
    {
        "$schema",
        "name",
        "version",
        "description",
        "tags",
        "properties",
        "image",
        "conda_file",
        "build",
        "os_type",
        "inference_config",
        "datastore",
        "intellectual_property",
    }
)

# Model inputs are folders (or a file) like uri_folder data here.
MODEL_TYPES = ("custom_model", "mlflow_model", "triton_model")
DATA_INPUT_TYPES = ("uri_folder", "uri_file", "mltable") + MODEL_TYPES
LITERAL_INPUT_TYPES = ("string", "integer", "number", "boolean")
INPUT_TYPES = DATA_INPUT_TYPES + LITERAL_INPUT_TYPES
OUTPUT_TYPES = ("uri_folder", "uri_file", "mltable") + MODEL_TYPES
_FILE_MODES = ("ro_mount", "download", "direct")
INPUT_MODES = {
    "uri_folder": _FILE_MODES,
    "uri_file": _FILE_MODES,
    "mltable": ("ro_mount", "download", "direct", "eval_mount", "eval_download"),
    **{kind: _FILE_MODES for kind in MODEL_TYPES},
}
# mount and direct are accepted by the service for outputs too; locally all write in place.
OUTPUT_MODES = ("rw_mount", "upload", "mount", "direct")
LOGGING_LEVELS = ("DEBUG", "INFO", "WARNING")
TASK_TYPES = ("run_function",)
STEP_TYPES = ("parallel", "command")
# Valid on Azure, not runnable here: an error that says so, not "unknown step type".
UNRUNNABLE_STEP_TYPES = ("pipeline", "sweep", "spark", "automl", "data_transfer", "import", "flow")

UNSUPPORTED: dict[str, str] = {
    "model": "task.model (task.type: model) is not supported; use task.type: run_function",
}
# Keys users put at the wrong level, with where they belong.
MISPLACED_IN_STEP = {
    "instance_count": "instance_count belongs under 'resources:'",
    "max_retries": "max_retries belongs under 'retry_settings:'",
    "timeout": "timeout belongs under 'retry_settings:'",
    "code": "code belongs under 'task:'",
    "entry_script": "entry_script belongs under 'task:'",
    "program_arguments": "program_arguments belongs under 'task:'",
    "append_row_to": "append_row_to belongs under 'task:'",
    "environment": "environment belongs under 'task:'",
    "item_error_threshold": "the field is 'error_threshold'",
    "allowed_failed_percent": "allowed_failed_percent is a program argument: add "
    "'--allowed_failed_percent N' to task.program_arguments",
    "task_overhead_timeout": "task_overhead_timeout is a program argument: add "
    "'--task_overhead_timeout N' to task.program_arguments",
    "progress_update_timeout": "progress_update_timeout is a program argument: add "
    "'--progress_update_timeout N' to task.program_arguments",
    "first_task_creation_timeout": "first_task_creation_timeout is a program argument: add "
    "'--first_task_creation_timeout N' to task.program_arguments",
    "resource_monitor_interval": "resource_monitor_interval is a program argument: add "
    "'--resource_monitor_interval N' to task.program_arguments",
}
MISPLACED_IN_STEP["command"] = (
    "command belongs to command steps (type: command); a parallel step runs task.entry_script"
)
MISPLACED_IN_STEP["limits"] = (
    "limits belongs to command steps; a parallel step's timeout is retry_settings.timeout"
)
# A parallel step's fields in a command step.
MISPLACED_IN_COMMAND = {
    key: f"'{key}' belongs to parallel steps (type: parallel), and this step is type: command"
    for key in (
        "input_data",
        "mini_batch_size",
        "partition_keys",
        "max_concurrency_per_instance",
        "mini_batch_error_threshold",
        "error_threshold",
        "retry_settings",
        "logging_level",
        "task",
    )
}
MISPLACED_IN_TASK = {
    "mini_batch_size": "mini_batch_size belongs to the step, not to 'task:'",
    "input_data": "input_data belongs to the step, not to 'task:'",
    "logging_level": "logging_level belongs to the step, not to 'task:'",
    "environment_variables": "environment_variables belongs to the step, not to 'task:'",
    "retry_settings": "retry_settings belongs to the step, not to 'task:'",
}
