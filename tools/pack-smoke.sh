#!/usr/bin/env bash
# Proves the NuGet packages work for a new user: packs OnnxMultimodal and the two runtime meta-packages into a
# local feed, creates a fresh console app OUTSIDE the repository (none of its build settings apply) that
# references OnnxMultimodal.Runtime.Cpu from that feed, uses the first ```csharp block of docs/package-README.md
# as its Program.cs, and runs it on the committed tiny models.
#   tools/pack-smoke.sh [WORKDIR]      (default: a fresh temporary folder)
# Writes WORKDIR/feed/*.nupkg|*.snupkg and WORKDIR/app/, prints the app's output to stdout, exits non-zero on
# any failure. tests/OnnxMultimodal.Tests/PackageTests.cs runs it and checks the output and the packages.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
feed=$work/feed
app=$work/app
version=0.0.0-smoke
rm -rf "$feed" "$app"
mkdir -p "$feed" "$app"
# a fixed pre-release version: drop earlier smoke copies from the global cache so this run's bytes are used
nugets=${NUGET_PACKAGES:-$HOME/.nuget/packages}
rm -rf "$nugets"/onnxmultimodal/$version "$nugets"/onnxmultimodal.runtime.cpu/$version "$nugets"/onnxmultimodal.runtime.cuda/$version

for project in OnnxMultimodal OnnxMultimodal.Runtime.Cpu OnnxMultimodal.Runtime.Cuda; do
    dotnet pack "$repo/src/$project/$project.csproj" -c Release -o "$feed" -p:Version=$version --nologo -v q >&2
done

cat > "$app/nuget.config" <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="local" value="$feed" />
    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
  </packageSources>
</configuration>
XML
cat > "$app/SmokeApp.csproj" <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <ImplicitUsings>enable</ImplicitUsings>
    <Nullable>enable</Nullable>
    <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
    <!-- NU1603: some mirrors lack a dependency's exact minimum version and restore the next one up -->
    <NoWarn>\$(NoWarn);NU1603</NoWarn>
  </PropertyGroup>
  <ItemGroup>
    <PackageReference Include="OnnxMultimodal.Runtime.Cpu" Version="$version" />
  </ItemGroup>
</Project>
XML
# the README's first C# block, verbatim
awk '/^```csharp/ { if (!done) { on = 1; next } } /^```/ { if (on) { on = 0; done = 1 } } on' "$repo/docs/package-README.md" > "$app/Program.cs"
[ -s "$app/Program.cs" ] || { echo "no \`\`\`csharp block in docs/package-README.md" >&2; exit 1; }

dotnet build "$app/SmokeApp.csproj" -c Release --nologo -v q >&2
dotnet "$app/bin/Release/net10.0/SmokeApp.dll" "$repo/models"

# the README's second C# block (IChatClient over several turns, an image and a WAV in, an image out, logs and
# metrics) as a second fresh app; its output goes to WORKDIR/chat-output.txt (PackageTests reads it)
chat=$work/chat
rm -rf "$chat"; mkdir -p "$chat"
cp "$app/nuget.config" "$chat/"
sed -e 's#<PackageReference Include="OnnxMultimodal.Runtime.Cpu" Version="'"$version"'" />#&\n    <PackageReference Include="Microsoft.Extensions.Logging.Console" Version="10.0.5" />#' "$app/SmokeApp.csproj" > "$chat/ChatApp.csproj"
awk '/^```csharp/ { n++; if (n == 2) { on = 1; next } } /^```/ { if (on) { on = 0 } } on' "$repo/docs/package-README.md" > "$chat/Program.cs"
[ -s "$chat/Program.cs" ] || { echo "no second \`\`\`csharp block in docs/package-README.md" >&2; exit 1; }
dotnet build "$chat/ChatApp.csproj" -c Release --nologo -v q >&2
dotnet "$chat/bin/Release/net10.0/ChatApp.dll" "$repo/models" > "$work/chat-output.txt"

