"""One exception type for bad input: it carries every problem found, each with where it is."""


class SpecError(Exception):
    """Invalid user input. `problems` lists 'file:line: key.path: what was expected' strings."""

    def __init__(self, problems):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class Problems:
    """Collects problems so that a whole file is reported at once, then raises one SpecError."""

    def __init__(self):
        self.items = []

    def add(self, where, message):
        self.items.append(f"{where}: {message}" if where else message)

    def raise_if_any(self):
        if self.items:
            raise SpecError(self.items)
