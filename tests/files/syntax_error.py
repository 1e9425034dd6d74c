def setup(:
    pass
