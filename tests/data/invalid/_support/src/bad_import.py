import does_not_exist_pkg  # noqa: F401


def run(mini_batch):
    return mini_batch
