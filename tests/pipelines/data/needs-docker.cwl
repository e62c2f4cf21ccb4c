cwlVersion: v1.2
class: CommandLineTool
requirements:
  DockerRequirement: {dockerPull: "debian:stable-slim"}
baseCommand: "true"
inputs: []
outputs: []
