"""Fingerprints for the cache key: canonical parameters, the code that runs, input files.

The cache key of an execution is a sha256 over its *parts* (``Driver.cache_key_parts``), one module
of this package each:

- ``pipeline``, ``node``, ``component``: the pipeline name, node id and component type;
- ``implementation``: the code of the component itself (``implementation.implementation_parts``):
  the component's ``version``, a digest of each Python file it runs, and the installed versions of
  the libraries its output depends on (the class attribute ``libraries``). For a *standard*
  component (defined in Sluice's ``components`` package or a subpackage of it) the files are its
  module and the ``components/`` modules that module imports, transitively, less framework plumbing
  (``PLUMBING``); for a *custom* component they are the files defining its executor, component and
  driver classes plus the project files those import, transitively (``imports.local_imports``). A
  class without a file (typed into a notebook cell, ``python -c``) is keyed by its source and by the
  source of the functions, classes and constants of its module that its methods use by name,
  transitively, and of the project files of modules and functions they use from elsewhere
  (``classes``);
- ``parameters``: the canonical JSON of its parameters, module file paths excluded (``key``);
- ``inputs``: each input artifact's fingerprint (``data``);
- ``code``: for each module file parameter, a digest of the module file and the project files it
  imports, found as Python would find them (``imports``);
- ``external``: what the driver adds (ExampleGen: the content of its input files, ``data``).

Python files are digested by their syntax tree without docstrings (``source``), so comments,
docstrings, blank lines and formatting do not change a key, and any edit to code that runs does.
Digests are memoised per process by (path, mtime, size), directory listings by the directory's
mtime. Nothing here imports the libraries whose versions it records. An output artifact's
fingerprint is derived from the key of the execution that made it, so a change upstream changes
every key downstream of it, and nothing else (``key.key_of`` hashes the parts).

A key describes the files on disk; the code that runs is the code in memory. ``stale.stale_code``
tells when they may differ (a file edited after the process imported it), and the driver then
refuses to run the node rather than cache old behaviour under the new key.

This package is framework plumbing (``PLUMBING``): editing it changes no standard component's key.
Its public names are imported below from the modules that define them; code inside this package
imports from those modules, never from here.
"""
from sluice.components.fingerprint.key import KEY_FIELDS, canonical, canonical_json, key_of, sha256
from sluice.components.fingerprint.data import files_fingerprint, output_fingerprint
from sluice.components.fingerprint.source import source_digest
from sluice.components.fingerprint.imports import (SLUICE_COMPONENTS_DIR, SLUICE_PACKAGES, SLUICE_ROOT, anchor_dir,
                                                   code_fingerprint, code_parts, display_name, import_graph,
                                                   import_roots, is_library_file, is_project_file, is_sluice_file,
                                                   local_imports)
from sluice.components.fingerprint.classes import class_file
from sluice.components.fingerprint.implementation import (PLUMBING, closure, implementation_files,
                                                          implementation_fingerprint, implementation_parts, is_plumbing,
                                                          is_standard, library_version)
from sluice.components.fingerprint.stale import (note_loaded, outdated_modules, stale_code, stale_code_message,
                                                 stamp_imports)

__all__ = ['KEY_FIELDS', 'canonical', 'canonical_json', 'key_of', 'sha256', 'files_fingerprint', 'output_fingerprint',
           'source_digest', 'SLUICE_COMPONENTS_DIR', 'SLUICE_PACKAGES', 'SLUICE_ROOT', 'anchor_dir', 'code_fingerprint',
           'code_parts', 'display_name', 'import_graph', 'import_roots', 'is_library_file', 'is_project_file',
           'is_sluice_file', 'local_imports', 'class_file', 'PLUMBING', 'closure', 'implementation_files',
           'implementation_fingerprint', 'implementation_parts', 'is_plumbing', 'is_standard', 'library_version',
           'note_loaded', 'outdated_modules', 'stale_code', 'stale_code_message', 'stamp_imports']
