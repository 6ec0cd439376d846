"""The one orchestration core every runner drives: the plan of a run, its lease, the launch of a node
(driver -> executor -> publisher), the isolated executor process, resume, and why a node ran."""
