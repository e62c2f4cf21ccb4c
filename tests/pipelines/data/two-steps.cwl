cwlVersion: v1.2
class: Workflow
doc: Two steps; `first` depends only on `a`, `second` on the result and `b`.
inputs:
  a: string
  b: string
outputs:
  result:
    type: File
    outputSource: second/out
steps:
  first:
    run: echo.cwl
    in: {text: a}
    out: [out]
  second:
    run: append.cwl
    in: {prev: first/out, text: b}
    out: [out]
