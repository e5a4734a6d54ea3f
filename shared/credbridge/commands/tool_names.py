"""The container tools `credbridge setup` configures, in the order it reports them.

A module of its own so that the command line offers them without importing the setup code.
"""

TOOLS = ("docker", "podman", "skopeo", "buildah", "apptainer", "singularity")
